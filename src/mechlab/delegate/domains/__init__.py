"""Domains: a parser, a weighted structural similarity (not a text diff), the edits the oracle applies by code,
their inverses, and the corruption the noisy agent injects.

Every domain scores a file set against the seed as the mean over seed files of a per-file similarity in [0, 1] (a
missing or unparseable file scores 0), each extra file in the answer counting as a file that scores 0. ``documents``
holds the general formats (json, yaml, csv, srt, python, geojson), ``records`` the formats with a dedicated parser
from PyPI (ics, gpx, pgn, po, conllu, sql), installed with ``pip install "mechlab[delegate]"``; ``markup`` the
standard library's formats (email, svg, kml, urdf, xspf, votable) and ``infra`` the feeds and configurations (gtfs
with ``csv``; zone, dot, terraform, dockerfile, tle with dnspython, pydot, python-hcl2, dockerfile-parse, sgp4 from
the same extra).
"""

from __future__ import annotations

from mechlab.delegate.domains.base import Domain, Files
from mechlab.delegate.domains.documents import (
    CSVDomain,
    GeoJSONDomain,
    JSONDomain,
    PythonDomain,
    SRTDomain,
    YAMLDomain,
)
from mechlab.delegate.domains.infra import INFRA_DOMAINS
from mechlab.delegate.domains.markup import MARKUP_DOMAINS
from mechlab.delegate.domains.records import RECORD_DOMAINS

DOMAINS: dict[str, Domain] = {d.name: d for d in (JSONDomain(), YAMLDomain(), CSVDomain(), SRTDomain(), PythonDomain(),
                                                  GeoJSONDomain(), *RECORD_DOMAINS, *MARKUP_DOMAINS,
                                                  *INFRA_DOMAINS)}

__all__ = ["DOMAINS", "Domain", "Files"]
