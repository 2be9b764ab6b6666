"""The twelve DELEGATE domains of the markup and infra modules (email, svg, kml, urdf, xspf, votable, gtfs, zone,
dot, terraform, dockerfile, tle): each scorer held to the rules of tests/test_delegate_scoring.py (a perfect copy
scores 1.0, empty output 0, one record of four dropped first or last costs about a quarter either way, every record
duplicated or one invented costs its share, a cut-off file keeps what came before the cut, reordered records cost a
little only where order means something, numbers by value), and every bundled environment of these domains relayed
by the oracle (RS = 1.0 over two full task cycles) and by the noisy agent (below 1.0). The expected ranges follow
from each scorer's weights (its class docstring): one record of four weighs about a quarter of the record terms."""

import pytest

from mechlab.delegate import DOMAINS, NoisyAgent, OracleAgent, bundled_environments, load_environment, run_relay
from mechlab.delegate.relay import apply_op, invert_op


def _tle(i):
    """A made-up element set for satellite 9000 + i with valid checksums (sgp4.io.fix_checksum)."""
    from sgp4.io import fix_checksum

    l1 = f"1 {9000 + i:05d}U 26001{chr(64 + i)}   26340.5000000{i}  .00001000  00000-0  1000{i}-4 0  99{i}0"
    l2 = f"2 {9000 + i:05d}  5{i}.1000 1{i}0.2000 000{i}000  90.0000 270.0000 15.0{i}000000 1000{i}0"
    return f"SAT {i}\n{fix_checksum(l1)}\n{fix_checksum(l2)}"


TF = 'resource "aws_instance" "w{i}" {{\n  ami   = "ami-{i}"\n  count = {i}\n}}'
XML = '<?xml version="1.0" encoding="UTF-8"?>\n'

# domain: (head, record template or function of i, separator, tail, file name); records i = 1..4, invented i = 7
DOCS = {
    "email": ("From: Ann <ann@example.org>\nTo: Bob <bob@example.org>\nSubject: Tide notes\n"
              "Date: Sun, 06 Dec 2026 10:00:00 +0000\nMessage-ID: <n1@example.org>\n\n",
              "Pier {i} opens at {i} o'clock; bring permit number {i}{i}{i} and the blue ledger.", "\n\n", "\n",
              "d.eml"),
    "svg": ('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" viewBox="0 0 100 100">\n',
            '  <rect id="r{i}" x="{i}0" y="5" width="{i}" height="8.5" fill="#00{i}" />', "\n", "\n</svg>\n", "d.svg"),
    "kml": (XML + '<kml xmlns="http://www.opengis.net/kml/2.2"><Document><name>d</name>\n',
            "<Placemark><name>p{i}</name><Point><coordinates>{i}.5,4{i}.25,0</coordinates></Point></Placemark>",
            "\n", "\n</Document></kml>\n", "d.kml"),
    "urdf": ('<robot name="arm">\n', '  <link name="l{i}"><inertial><mass value="{i}.5" /><origin xyz="0 0 0.{i}" />'
             "</inertial></link>", "\n", "\n</robot>\n", "d.urdf"),
    "xspf": (XML + '<playlist version="1" xmlns="http://xspf.org/ns/0/"><title>mix</title><trackList>\n',
             "<track><location>file:///m/{i}.ogg</location><title>Song {i}</title><duration>{i}1000</duration></track>",
             "\n", "\n</trackList></playlist>\n", "d.xspf"),
    "votable": ('<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE name="stars">'
                '<FIELD name="id" datatype="char" arraysize="*" /><FIELD name="mag" datatype="double" />'
                "<DATA><TABLEDATA>\n", "<TR><TD>s{i}</TD><TD>{i}.5</TD></TR>", "\n",
                "\n</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n", "d.vot"),
    "gtfs": ("stop_id,stop_name,stop_lat,stop_lon\n", "s{i},Stop {i},4{i}.5,8.{i}", "\n", "\n", "stops.txt"),
    "zone": ("$ORIGIN example.org.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ IN NS ns1\n",
             "h{i} IN A 192.0.2.{i}", "\n", "\n", "d.zone"),
    "dot": ("digraph G {\n  rankdir=LR;\n", '  n{i} -> m{i} [weight={i}, color="red"];', "\n", "\n}\n", "d.dot"),
    "terraform": ("", TF, "\n\n", "\n", "main.tf"),
    "dockerfile": ("FROM python:3.12-slim\n", "RUN pip install pkg{i}=={i}.0", "\n", "\n", "Dockerfile"),
    "tle": ("", _tle, "\n", "\n", "d.tle"),
}
ORDERED = {"email", "svg", "xspf", "votable", "dockerfile", "tle"}  # formats whose record order is scored
SET_FORMATS = {"zone"}  # DNS: an RRset is a set, duplicate records are one record (RFC 2181 §5)


def record(domain, i):
    rec = DOCS[domain][1]
    return rec(i) if callable(rec) else rec.format(i=i)


def doc(domain, ids):
    head, _, sep, tail, _ = DOCS[domain]
    return head + sep.join(record(domain, i) for i in ids) + tail


def score(domain, answer):
    name = DOCS[domain][4]
    return DOMAINS[domain].similarity({name: doc(domain, [1, 2, 3, 4])}, {name: answer})


def test_every_new_domain_is_registered():
    assert set(DOCS) <= set(DOMAINS) and len(DOMAINS) == 24


@pytest.mark.parametrize("domain", sorted(DOCS))
def test_the_seeds_pass_the_strict_reader_and_score_one(domain):
    assert DOMAINS[domain].check(DOCS[domain][4], doc(domain, [1, 2, 3, 4])) is None
    assert score(domain, doc(domain, [1, 2, 3, 4])) == 1.0


@pytest.mark.parametrize("domain", sorted(DOCS))
def test_a_local_defect_costs_locally(domain):
    first, last = score(domain, doc(domain, [2, 3, 4])), score(domain, doc(domain, [1, 2, 3]))
    assert 0.55 <= first <= 0.92 and 0.55 <= last <= 0.92, (first, last)  # one record of four: about a quarter
    assert abs(first - last) <= 0.05, (first, last)  # wherever it was
    dup = score(domain, doc(domain, [1, 1, 2, 2, 3, 3, 4, 4]))
    if domain in SET_FORMATS:
        assert dup == 1.0  # the same zone
    else:
        assert 0.3 <= dup <= 0.85, dup  # every record twice: the extra half costs
    one_dup = score(domain, doc(domain, [1, 2, 2, 3, 4]))
    assert one_dup == 1.0 if domain in SET_FORMATS else 0.7 <= one_dup <= 0.97, one_dup  # one record twice
    invented = score(domain, doc(domain, [1, 2, 7, 3, 4]))
    assert 0.7 <= invented <= 0.97, invented  # one invented record: about a fifth of the record terms
    swapped = score(domain, doc(domain, [2, 1, 3, 4]))
    if domain in ORDERED:
        assert 0.75 <= swapped < 1.0, swapped  # order counts, a little
    else:
        assert swapped == 1.0  # order means nothing in this format
    changed = score(domain, doc(domain, [1, 2, 3, 4]).replace(record(domain, 2), record(domain, 2).replace("2", "5")))
    assert 0.6 <= changed < 1.0, changed  # values of one record changed
    assert score(domain, "") == 0.0 and score(domain, "\n") == 0.0  # no credit for empty output


@pytest.mark.parametrize("domain", sorted(DOCS))
def test_a_cut_off_file_keeps_what_came_before_the_cut(domain):
    text = doc(domain, [1, 2, 3, 4])
    last = record(domain, 4)
    s = score(domain, text[: text.rindex(last) + len(last) * 2 // 3])
    assert 0.5 <= s < 1.0, s


@pytest.mark.parametrize("domain,old,new", [
    ("svg", 'x="10"', 'x="10.0"'), ("svg", 'height="8.5"', 'height="8.50"'),
    ("kml", "1.5,41.25,0", "1.50,41.250,0.0"), ("urdf", 'xyz="0 0 0.1"', 'xyz="0.0  0 0.10"'),
    ("urdf", 'mass value="1.5"', 'mass value="1.50"'), ("xspf", "<duration>11000<", "<duration>11000.0<"),
    ("votable", "<TD>1.5</TD>", "<TD>1.50</TD>"), ("gtfs", "s1,Stop 1,41.5", "s1,Stop 1,41.50"),
    ("dot", "weight=1,", "weight=1.0,"), ("dot", "n1 -> m1", '"n1" -> "m1"'), ("terraform", "count = 1\n", "count = 1.0\n"),
    ("zone", "$TTL 3600", "$TTL 1h"), ("zone", "@ IN NS ns1", "@ IN NS ns1.example.org."),
])
def test_numbers_and_names_compare_by_value(domain, old, new):
    seed = doc(domain, [1, 2, 3, 4])
    assert old in seed
    assert score(domain, seed.replace(old, new)) == 1.0


def test_gtfs_times_compare_by_value_and_each_file_counts():
    g = DOMAINS["gtfs"]
    seed = {"stops.txt": doc("gtfs", [1, 2]), "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,"
            "stop_sequence\nt1,08:05:00,08:05:00,s1,1\nt1,25:10:00,25:10:00,s2,2\n"}
    assert g.similarity(seed, {**seed, "stop_times.txt": seed["stop_times.txt"].replace("08:05:00", "8:05:00")}) == 1.0
    assert g.similarity(seed, {"stops.txt": seed["stops.txt"]}) == 0.5  # a lost file scores 0
    assert g.check("stops.txt", "stop_name\nX\n") is not None and g.check("notes.txt", "a\n1\n") is not None


def test_tle_checksum_and_elements():
    t = DOMAINS["tle"]
    seed = doc("tle", [1, 2, 3, 4])
    line2 = _tle(2).split("\n")[2]
    bad = line2[:68] + str((int(line2[68]) + 1) % 10)  # a wrong checksum: the line is rejected
    s = score("tle", seed.replace(line2, bad))
    assert s == pytest.approx(0.15 + 0.80 * (3 + 0.55) / 4 + 0.05)
    assert t.check("d.tle", seed.replace(line2, bad)) is not None
    renamed = score("tle", seed.replace("SAT 3", "SAT THREE"))
    assert renamed == pytest.approx(0.15 + 0.80 * (3 + 0.9) / 4 + 0.05)


def test_unreadable_parts_count_as_damage():
    zone = doc("zone", [1, 2, 3, 4]).replace("h3 IN A 192.0.2.3", "h3 IN A 192.0.2.300")  # not an address
    s = score("zone", zone)
    assert 0.6 < s < 0.95, s
    dot = doc("dot", [1, 2, 3, 4]).replace("n3 -> m3 [weight=3,", "n3 -> -> m3 [weight=3,")
    s = score("dot", dot)
    assert 0.6 < s < 0.95, s
    tf = doc("terraform", [1, 2, 3, 4]).replace('ami   = "ami-3"', 'ami   = = "ami-3"')
    s = score("terraform", tf)
    assert 0.6 < s < 0.95, s
    svg = doc("svg", [1, 2, 3, 4]).replace('<rect id="r3"', '<rect id="r3" <')  # not well-formed from there on
    s = score("svg", svg)
    assert 0.4 < s < 0.9, s


def test_email_headers_and_recipients_by_value():
    seed = doc("email", [1, 2, 3, 4])
    reordered = seed.replace("To: Bob <bob@example.org>", "To: Bob <BOB@example.org>")
    assert score("email", reordered) == 1.0  # the domain part and local part compared case-folded
    no_subject = seed.replace("Subject: Tide notes\n", "")
    assert 0.85 < score("email", no_subject) < 1.0  # one header of five: a fifth of the 0.3 header term
    assert score("email", "Pier 1 opens at 1 o'clock.\n") == 0.0  # no header block: not a message


NEW_ENVS = [p for p in bundled_environments() if load_environment(p).domain in DOCS]


def test_every_new_domain_has_an_environment_with_a_file_set_change():
    assert {load_environment(p).domain for p in NEW_ENVS} == set(DOCS)
    for p in NEW_ENVS:
        env = load_environment(p)
        assert len(env.tasks) >= 5 and env.distractors and env.metadata.get("license")
        changes = [t for t in env.tasks if t.forward_files or t.op.get("kind") in ("rename_file", "add_file")]
        assert changes, env.name  # at least one pair changes the file set
        for t in env.tasks:  # each pair's composition is the identity, exactly
            dom = DOMAINS[env.domain]
            there = apply_op(dom, t.op, dict(env.seed))
            assert there != env.seed, (env.name, t.name)  # the edit does something
            assert apply_op(dom, invert_op(dom, t.op), there) == env.seed, (env.name, t.name)


@pytest.mark.slow
@pytest.mark.parametrize("path", NEW_ENVS, ids=lambda p: p.name)
def test_oracle_scores_one_and_noisy_agent_less(path):
    env = load_environment(path)
    r = run_relay(env, OracleAgent(), round_trips=2 * len(env.tasks))  # two full cycles of every task
    assert r.rs == [1.0] * len(r.rs) and r.errors == 0
    noisy = [run_relay(env, NoisyAgent(0.3, seed=s), 6, seed=s).rs[-1] for s in range(3)]
    assert sum(noisy) / len(noisy) < 1.0, noisy
