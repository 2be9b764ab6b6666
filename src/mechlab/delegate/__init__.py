"""DELEGATE-52's round-trip relay (arXiv 2604.15597): environments, domains with parser-based similarity, the
relay runner, reading files from replies as models write them, calibration agents, and reports. RS@k counts
model interactions, as the paper does: RS@20 is the score after 10 round trips."""

from mechlab.delegate.domains import DOMAINS, Domain
from mechlab.delegate.env import EditTask, Environment, load_environment
from mechlab.delegate.relay import (
    REPLY_SHAPES,
    REPORTED_K,
    NoisyAgent,
    OracleAgent,
    RelayResult,
    Reply,
    Step,
    build_prompt,
    parse_files,
    predicted_noisy_rs,
    rs_at,
    run_relay,
    run_relays,
    shaped_reply,
)
from mechlab.delegate.replies import ParsedReply, format_files, parse_reply
from mechlab.delegate.runner import (
    bundled_environments,
    check_settings,
    load_results,
    make_agent,
    plot_report,
    report,
    run,
)

__all__ = ["DOMAINS", "REPLY_SHAPES", "REPORTED_K", "Domain", "EditTask", "Environment", "NoisyAgent",
           "OracleAgent", "ParsedReply", "RelayResult", "Reply", "Step", "build_prompt", "bundled_environments", "check_settings",
           "format_files",
           "load_environment", "load_results", "make_agent", "parse_files", "parse_reply", "plot_report", "predicted_noisy_rs",
           "report", "rs_at", "run", "run_relay", "run_relays", "shaped_reply"]
