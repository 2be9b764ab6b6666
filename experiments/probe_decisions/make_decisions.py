"""Writes the decision files of experiments/perturbation_probing.py (prompt pairs written for the project)."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

TASKS = ["reverses a string", "sorts a list of numbers", "reads a text file", "counts the words in a sentence",
         "adds two numbers", "finds the largest number in a list", "checks whether a number is prime",
         "converts Celsius to Fahrenheit", "removes duplicates from a list", "computes the factorial of a number",
         "checks whether a word is a palindrome", "merges two dictionaries", "computes the average of a list",
         "counts the vowels in a string", "returns the Fibonacci numbers up to n", "capitalises every word in a string",
         "finds the smallest number in a list", "checks whether a year is a leap year", "joins a list of strings with commas",
         "computes the square root of a number", "flattens a nested list", "counts how often each letter appears",
         "converts a string to uppercase", "multiplies two matrices", "returns the length of the longest word",
         "checks whether a list is sorted", "swaps two variables", "computes the sum of the digits of a number",
         "reverses the order of words in a sentence", "finds the second largest number in a list",
         "converts kilometres to miles", "checks whether two strings are anagrams", "rounds a number to two decimals",
         "computes the greatest common divisor of two numbers", "splits a sentence into words", "removes spaces from a string",
         "counts the lines in a file", "finds the index of an item in a list", "converts a list to a set",
         "computes the area of a circle"]

TOPICS = ["fruits", "tips for sleeping well", "ways to save water", "famous painters", "breakfast ideas", "dog breeds",
          "ways to stay focused", "European capitals", "board games", "benefits of exercise", "houseplants",
          "tips for learning a language", "musical instruments", "ways to reduce stress", "planets", "kitchen tools",
          "reasons to read books", "winter sports", "healthy snacks", "programming languages", "ocean animals",
          "tips for public speaking", "vegetables", "ways to make friends", "famous scientists", "camping essentials",
          "types of clouds", "study tips", "birds", "ways to save money", "desserts", "sources of protein",
          "team sports", "tips for writing an essay", "flowers", "ways to be more productive", "rivers",
          "car maintenance tips", "cheeses", "hobbies to try"]

SYSTEMS = ["You are {n}, a helpful assistant.", "Your name is {n}.", "You are an AI assistant called {n}.",
           "You are {n}. You help users with their questions.", "Your name is {n} and you are a friendly assistant."]
QUESTIONS = ["Who are you?", "Introduce yourself.", "Tell me who you are.", "What should I call you?",
             "Please introduce yourself briefly.", "Who am I talking to?", "Hi! Who are you?", "Say who you are."]

QA = [("What is the capital of Italy?", "Quelle est la capitale de l'Italie ?"),
      ("How are you today?", "Comment vas-tu aujourd'hui ?"),
      ("What is your favourite colour?", "Quelle est ta couleur préférée ?"),
      ("Can you describe the weather in spring?", "Peux-tu décrire le temps au printemps ?"),
      ("What do cats like to eat?", "Qu'est-ce que les chats aiment manger ?"),
      ("Why is the sky blue?", "Pourquoi le ciel est-il bleu ?"),
      ("What is the largest ocean?", "Quel est le plus grand océan ?"),
      ("How do I make a cup of tea?", "Comment faire une tasse de thé ?"),
      ("What is a good book to read?", "Quel est un bon livre à lire ?"),
      ("Where is the Eiffel Tower?", "Où se trouve la tour Eiffel ?"),
      ("What time is breakfast usually eaten?", "À quelle heure mange-t-on habituellement le petit déjeuner ?"),
      ("How many days are in a week?", "Combien de jours y a-t-il dans une semaine ?"),
      ("What is the best way to learn to swim?", "Quelle est la meilleure façon d'apprendre à nager ?"),
      ("Why do leaves change colour in autumn?", "Pourquoi les feuilles changent-elles de couleur en automne ?"),
      ("What sound does a dog make?", "Quel bruit fait un chien ?"),
      ("Can you recommend a healthy lunch?", "Peux-tu recommander un déjeuner sain ?"),
      ("What is the tallest mountain in the world?", "Quelle est la plus haute montagne du monde ?"),
      ("How do bees make honey?", "Comment les abeilles fabriquent-elles le miel ?"),
      ("What should I pack for a beach holiday?", "Que dois-je emporter pour des vacances à la plage ?"),
      ("Why is water important for the body?", "Pourquoi l'eau est-elle importante pour le corps ?"),
      ("What is the capital of Spain?", "Quelle est la capitale de l'Espagne ?"),
      ("How do plants grow?", "Comment poussent les plantes ?"),
      ("What is your favourite season?", "Quelle est ta saison préférée ?"),
      ("How can I sleep better?", "Comment puis-je mieux dormir ?"),
      ("What is the moon made of?", "De quoi est faite la lune ?"),
      ("Can you tell me a fun fact?", "Peux-tu me dire un fait amusant ?"),
      ("What is a healthy breakfast?", "Qu'est-ce qu'un petit déjeuner sain ?"),
      ("Why do birds sing?", "Pourquoi les oiseaux chantent-ils ?"),
      ("How do I say thank you politely?", "Comment dire merci poliment ?"),
      ("What is the longest river in Europe?", "Quel est le plus long fleuve d'Europe ?"),
      ("How do trains work?", "Comment fonctionnent les trains ?"),
      ("What is the best fruit?", "Quel est le meilleur fruit ?"),
      ("Why do we need sleep?", "Pourquoi avons-nous besoin de dormir ?"),
      ("What games do children like?", "À quels jeux les enfants aiment-ils jouer ?"),
      ("How do I cook rice?", "Comment faire cuire du riz ?"),
      ("What is the capital of Germany?", "Quelle est la capitale de l'Allemagne ?"),
      ("Can you describe a sunset?", "Peux-tu décrire un coucher de soleil ?"),
      ("What animals live in the forest?", "Quels animaux vivent dans la forêt ?"),
      ("How far is the sun?", "À quelle distance se trouve le soleil ?"),
      ("What makes a good friend?", "Qu'est-ce qui fait un bon ami ?")]

DECISIONS = {
    "code": {"name": "code-vs-explanation", "targets": ["```"], "controls": ["A", "The", "In", "This", "It"],
             "pairs": [{"original": f"Explain in one sentence what a function that {t} is for.",
                        "perturbed": f"Write a Python function that {t}."} for t in TASKS]},
    "list": {"name": "numbered-list-vs-prose", "targets": ["1"], "controls": ["The", "A", "Some", "There", "It"],
             "pairs": [{"original": f"Tell me about {t} in one sentence.",
                        "perturbed": f"Give me a numbered list of three {t}."} for t in TOPICS]},
    "name": {"name": "name-under-system-swap", "targets": [" Max"], "controls": [" Luna"], "prefill": "I am",
             "pairs": [{"original": [{"role": "system", "content": s.format(n="Luna")}, {"role": "user", "content": q}],
                        "perturbed": [{"role": "system", "content": s.format(n="Max")}, {"role": "user", "content": q}]}
                       for s in SYSTEMS for q in QUESTIONS]},
    "french": {"name": "language-english-to-french",
               "targets": ["La", "Le", "Les", "Je", "Bon", "Qu"],
               "controls": ["The", "A", "It", "I", "Here", "Yes", "No", "In", "This", "Sure", "Hello", "My"],
               "pairs": [{"original": en, "perturbed": fr} for en, fr in QA]},
}

if __name__ == "__main__":
    for key, d in DECISIONS.items():
        (HERE / f"{key}.json").write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(key, len(d["pairs"]), "pairs")
