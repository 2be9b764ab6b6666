"""Domains: a parser, a weighted structural similarity (not a text diff), the edits the oracle applies by code,
their inverses, and the corruption the noisy agent injects.

Every domain scores a file set against the seed as the mean over seed files of a per-file similarity in [0, 1]
(a missing or unparseable file scores 0); extra files are ignored. ``documents`` holds the general formats (json,
yaml, csv, srt, python, geojson), ``records`` the formats with a dedicated parser from PyPI (ics, gpx, pgn, po,
conllu, sql), installed with ``pip install "mechlab[delegate]"``.
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
from mechlab.delegate.domains.records import RECORD_DOMAINS

DOMAINS: dict[str, Domain] = {d.name: d for d in (JSONDomain(), YAMLDomain(), CSVDomain(), SRTDomain(), PythonDomain(),
                                                  GeoJSONDomain(), *RECORD_DOMAINS)}

__all__ = ["DOMAINS", "Domain", "Files"]
