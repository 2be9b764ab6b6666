def is_palindrome(word):
    cleaned = "".join(ch.lower() for ch in word if ch.isalnum())
    return cleaned == cleaned[::-1]


if __name__ == "__main__":
    print(is_palindrome("A man, a plan, a canal: Panama"))
