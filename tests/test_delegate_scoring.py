"""DELEGATE scorers: a local defect costs locally, in every domain. Each domain gets a small seed of four records
and the same kinds of damage: a missing record (first or last: the same cost), every record duplicated, an
invented record, two records swapped, a file cut off inside its last record, an empty answer; plus the
domain-specific ones (a ragged CSV row, numbers written differently, MySQL dump syntax). The expected ranges follow
from each scorer's definition (the weights in its docstring): one record of four weighs about a quarter of the
record terms."""

import json

import pytest

from mechlab.delegate import DOMAINS

EV = "BEGIN:VEVENT\nUID:e{i}\nSUMMARY:Event {i}\nDTSTART:2026010{i}T100000Z\nDTEND:2026010{i}T110000Z\nEND:VEVENT"
GAME = '[Event "Game {i}"]\n[White "W{i}"]\n[Black "B{i}"]\n[Result "*"]\n\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 *'
SENT = ("# sent_id = s{i}\n# text = Cats sleep {i}\n1\tCats\tcat\tNOUN\t_\t_\t2\tnsubj\t_\t_\n"
        "2\tsleep\tsleep\tVERB\t_\t_\t0\troot\t_\t_\n3\t{i}\t{i}\tNUM\t_\t_\t2\tobl\t_\t_")
FEATURE = ('{{"type": "Feature", "properties": {{"name": "p{i}", "rank": {i}}}, '
           '"geometry": {{"type": "Point", "coordinates": [{i}.5, 4{i}.25]}}}}')
TRKPT = '<trkpt lat="46.{i}1" lon="8.{i}2"><ele>1{i}00.0</ele></trkpt>'

# domain: (head, record template, separator, tail, file name); records are i = 1..4, an invented one is i = 7
DOCS = {
    "json": ('{"moons": [', '{{"name": "m{i}", "mass": {i}.5, "tags": ["a{i}", "b"]}}', ", ", "]}\n", "d.json"),
    "yaml": ("moons:\n", "- name: m{i}\n  mass: {i}.5\n  tags: [a{i}, b]", "\n", "\n", "d.yaml"),
    "csv": ("name,mass,radius\n", "m{i},{i}.5,{i}00", "\n", "\n", "d.csv"),
    "srt": ("", "{i}\n00:00:0{i},000 --> 00:00:0{i},800\nLine number {i} of the film", "\n\n", "\n", "d.srt"),
    "python": ("", "print('line {i}', {i} * 7)", "\n", "\n", "d.py"),
    "geojson": ('{"type": "FeatureCollection", "features": [', FEATURE, ", ", "]}\n", "d.geojson"),
    "ics": ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\n", EV, "\n", "\nEND:VCALENDAR\n", "d.ics"),
    "gpx": ('<?xml version="1.0"?>\n<gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
            "<trk><name>r</name><trkseg>\n", TRKPT, "\n", "\n</trkseg></trk></gpx>\n", "d.gpx"),
    "pgn": ("", GAME, "\n\n", "\n", "d.pgn"),
    "po": ('msgid ""\nmsgstr ""\n"Language: fr\\n"\n\n', 'msgid "word {i}"\nmsgstr "mot {i}"', "\n\n", "\n", "d.po"),
    "conllu": ("", SENT, "\n\n", "\n\n", "d.conllu"),
    "sql": ("", "CREATE TABLE t{i} (id INT PRIMARY KEY, name VARCHAR({i}0) NOT NULL)", ";\n", ";\n", "d.sql"),
}


def doc(domain, ids):
    head, rec, sep, tail, _ = DOCS[domain]
    return head + sep.join(rec.format(i=i) for i in ids) + tail


def score(domain, answer):
    name = DOCS[domain][4]
    return DOMAINS[domain].similarity({name: doc(domain, [1, 2, 3, 4])}, {name: answer})


def cut_inside_last_record(domain):
    text = doc(domain, [1, 2, 3, 4])
    head, rec, sep, tail, _ = DOCS[domain]
    last = rec.format(i=4)
    return text[: text.rindex(last) + len(last) * 2 // 3]


@pytest.mark.parametrize("domain", sorted(DOCS))
def test_the_seeds_pass_the_strict_reader_and_score_one(domain):
    assert DOMAINS[domain].check(DOCS[domain][4], doc(domain, [1, 2, 3, 4])) is None
    assert score(domain, doc(domain, [1, 2, 3, 4])) == 1.0


@pytest.mark.parametrize("domain", sorted(DOCS))
def test_a_local_defect_costs_locally(domain):
    first, last = score(domain, doc(domain, [2, 3, 4])), score(domain, doc(domain, [1, 2, 3]))
    assert 0.55 <= first <= 0.9 and 0.55 <= last <= 0.9, (first, last)  # one record of four: about a quarter
    assert abs(first - last) <= 0.05, (first, last)  # wherever it was
    dup = score(domain, doc(domain, [1, 1, 2, 2, 3, 3, 4, 4]))
    assert 0.3 <= dup <= 0.85, dup  # every record twice: the extra half costs
    invented = score(domain, doc(domain, [1, 2, 7, 3, 4]))
    assert 0.7 <= invented <= 0.97, invented  # one invented record: about a fifth of the record terms
    swapped = score(domain, doc(domain, [2, 1, 3, 4]))
    assert 0.75 <= swapped < 1.0, swapped  # order counts, a little
    assert score(domain, "") == 0.0 and score(domain, "\n") == 0.0  # no credit for empty output


@pytest.mark.parametrize("domain", sorted(set(DOCS) - {"python"}))
def test_a_cut_off_file_keeps_what_came_before_the_cut(domain):
    s = score(domain, cut_inside_last_record(domain))
    assert 0.5 <= s < 1.0, s


def test_a_cut_off_program_that_no_longer_parses_scores_zero():
    assert score("python", cut_inside_last_record("python")) == 0.0  # nothing runs


@pytest.mark.parametrize("domain,old,new", [
    ("json", '"mass": 1.5', '"mass": 1.50'), ("json", '"mass": 2.5', '"mass": 25e-1'),
    ("yaml", "mass: 1.5", "mass: 1.50"), ("csv", "m1,1.5,100", "m1,1.50,100.0"), ("csv", "m2,2.5", "m2,\xa02.5 "),
    ("geojson", '"rank": 1}', '"rank": 1.0}'), ("gpx", "<ele>1100.0</ele>", "<ele>1100</ele>"),
])
def test_numbers_compare_by_value(domain, old, new):
    seed = doc(domain, [1, 2, 3, 4])
    assert old in seed
    assert score(domain, seed.replace(old, new)) == 1.0


def test_json_values_compare_by_value_but_true_is_not_one():
    j = DOMAINS["json"]
    assert j.similarity({"a": '{"x": 1, "y": [1, 2]}'}, {"a": '{"y": [1.0, 2], "x": 1.0}'}) == 1.0
    assert j.similarity({"a": '{"x": true, "y": 0}'}, {"a": '{"x": 1, "y": false}'}) == pytest.approx(0.35)
    assert j.similarity({"a": '{"x": 1}'}, {"a": '{"x": 1, "extra": 2}'}) == pytest.approx(0.5)  # an extra field costs
    assert j.similarity({"a": '{"x": 1}'}, {"a": '{"x": 1,}'}) == 1.0  # a trailing comma is repaired
    assert j.similarity({"a": '[1, 2]'}, {"a": '{}'}) == 0.0


def test_dropping_any_of_four_json_items_costs_about_a_quarter():
    seed = json.dumps({"items": [{"n": i, "s": str(i)} for i in range(4)]})
    scores = []
    for drop in range(4):
        got = json.loads(seed)
        del got["items"][drop]
        scores.append(DOMAINS["json"].similarity({"a": seed}, {"a": json.dumps(got)}))
    # 0.9 × 3/4 of the leaves + 0.1 × 2/3 of the order pairs (the first or last item) or 1/3 (a middle one)
    assert scores[0] == pytest.approx(0.9 * 0.75 + 0.1 * 2 / 3) and scores[3] == pytest.approx(scores[0])
    assert scores[1] == pytest.approx(0.9 * 0.75 + 0.1 / 3) and scores[2] == pytest.approx(scores[1])


def test_csv_ragged_and_cut_rows_cost_their_cells():
    seed = doc("csv", [1, 2, 3, 4])
    ragged = score("csv", seed.replace("m2,2.5,200", "m2,2.5,200,extra"))
    short = score("csv", seed.replace("m2,2.5,200", "m2,2.5"))
    # one row of four keeps 3 of 4 cells (extra cell) or 2 of 3: rows term 0.6 × (3 + 3/4) / 4 etc.
    assert ragged == pytest.approx(0.2 + 0.6 * (3 + 3 / 4) / 4 + 0.2)
    assert short == pytest.approx(0.2 + 0.6 * (3 + 2 / 3) / 4 + 0.2)
    assert DOMAINS["csv"].check("d.csv", seed.replace("m2,2.5,200", "m2,2.5")) is not None  # seeds stay strict


def test_srt_cues_without_numbers_are_read_and_invented_cues_cost():
    seed = doc("srt", [1, 2, 3, 4])
    no_numbers = "\n\n".join(b.split("\n", 1)[1] for b in seed.strip().split("\n\n")) + "\n"
    assert score("srt", no_numbers) == 1.0
    # one invented cue of five: text and timing are over 5 cues, coverage and order untouched
    # the invented cue's number counts in the order term's numbering part (4 of 5 cues keep the seed's number)
    assert score("srt", doc("srt", [1, 2, 3, 4, 7])) == pytest.approx(0.2 + 0.4 * 4 / 5 + 0.25 * 4 / 5
                                                                      + 0.15 * (0.8 + 0.2 * 4 / 5))


def test_sql_reads_mysql_dumps_and_scores_indexes():
    sql = DOMAINS["sql"]
    dump = ("DROP TABLE IF EXISTS `books`;\n/*!40101 SET NAMES utf8mb4 */;\nCREATE TABLE `books` (\n"
            "  `id` int NOT NULL AUTO_INCREMENT,\n  `title` varchar(200) NOT NULL,\n  PRIMARY KEY (`id`),\n"
            "  KEY `title_ix` (`title`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
            "CREATE INDEX `by_title` ON `books` (`title`);\n")
    assert sql.check("s.sql", dump) is None and sql.similarity({"s": dump}, {"s": dump}) == 1.0
    assert sql.similarity({"s": dump}, {"s": dump.replace("CREATE INDEX `by_title` ON `books` (`title`);\n", "")}) < 0.6
    assert 0.85 < sql.similarity({"s": dump}, {"s": dump.replace("varchar(200)", "varchar(250)")}) < 1.0
    assert 0.85 < sql.similarity({"s": dump}, {"s": dump.replace("  KEY `title_ix` (`title`)\n", "").replace(
        "PRIMARY KEY (`id`),", "PRIMARY KEY (`id`)")}) < 1.0
    plain = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT);"
    assert sql.similarity({"s": plain}, {"s": "CREATE TABLE `t` (`id` INT PRIMARY KEY, `name` TEXT);"}) == 1.0
    # an unreadable statement among readable ones: the readable tables still count
    broken = doc("sql", [1, 2, 3]) + "CREATE TABLE t4 (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);\n"
    broken += "CREATE TABL oops (;\n"
    assert 0.6 < score("sql", broken) < 1.0


def test_pgn_reads_past_an_illegal_move_and_counts_the_moves_before_it():
    seed = doc("pgn", [1, 2, 3, 4])
    at = seed.rindex("3. Bb5")
    bad = seed[:at] + "3. Ke3" + seed[at + 6:]  # game 4's third white move is illegal
    s = score("pgn", bad)
    assert 0.85 < s < 1.0, s
    assert DOMAINS["pgn"].check("d.pgn", bad) is not None  # a seed with an illegal move is rejected


def test_python_output_lines_missing_or_invented_both_cost():
    seed = doc("python", [1, 2, 3, 4])
    assert score("python", doc("python", [1, 2, 3])) == pytest.approx(0.1 + 0.9 * 3 / 4)
    assert score("python", doc("python", [1, 2, 3, 4, 7])) == pytest.approx(0.1 + 0.9 * 4 / 5)
    assert score("python", "# nothing here\n") == 0.0 and score("python", seed) == 1.0


def test_python_scripts_import_the_other_files_of_the_set():
    seed = {"main.py": "import helper\nprint(helper.greet())\n", "helper.py": "def greet():\n    return 'hi'\n"}
    py = DOMAINS["python"]
    assert py.similarity(seed, dict(seed)) == 1.0
    changed = {**seed, "helper.py": "def greet():\n    return 'bye'\n"}
    # main.py prints the wrong line (0.1 + 0.9 × 0), helper.py prints nothing either way (1.0)
    assert py.similarity(seed, changed) == pytest.approx((0.1 + 1.0) / 2)


def test_exact_records_paired_first_keep_the_optimal_matching():
    """matched_records pairs exactly equal records before the Hungarian method. For a score 1 − d with d a metric
    (here the normalised Hamming distance) pairing equal records is optimal (exchange argument: s(x, z) ≥ s(x, y) +
    s(y, z) − 1), so the total equals the brute-force optimum over every assignment."""
    import itertools
    import random

    from mechlab.delegate.domains.base import matched_records

    def score(a, b):
        return 1 - sum(x != y for x, y in zip(a, b)) / len(a)

    rng = random.Random(0)
    for _ in range(60):
        seed = [tuple(rng.choice("ab") for _ in range(3)) for _ in range(rng.randint(1, 5))]
        got = [tuple(rng.choice("ab") for _ in range(3)) for _ in range(rng.randint(1, 5))]
        small, large = (seed, got) if len(seed) <= len(got) else (got, seed)
        best = max(sum(score(x, large[j]) for x, j in zip(small, perm))
                   for perm in itertools.permutations(range(len(large)), len(small)))
        total, _ = matched_records(seed, got, score)
        assert abs(total * max(len(seed), len(got)) - best) <= 1e-12


@pytest.mark.parametrize("domain", ["email", "zone", "dot", "svg", "gtfs", "csv"])
def test_a_byte_order_mark_or_other_line_endings_cost_nothing(domain):
    from pathlib import Path

    from mechlab.delegate.domains import DOMAINS

    envs = Path(__file__).resolve().parents[1] / "src" / "mechlab" / "delegate" / "environments"
    seed_dir = next(p for p in sorted(envs.iterdir()) if p.name.startswith(domain + "-")) / "seed"
    files = {p.name: p.read_text(encoding="utf-8") for p in seed_dir.iterdir() if p.is_file()}
    for change in (lambda t: "\ufeff" + t, lambda t: t.replace("\n", "\r\n"), lambda t: t.replace("\n", "\r")):
        assert DOMAINS[domain].similarity(files, {k: change(v) for k, v in files.items()}) == 1.0
