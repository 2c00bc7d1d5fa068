#!/usr/bin/env python3
"""The integration harness itself works (no imapmig needed): servers start,
TLS verifies with the harness CA, STARTTLS / plain instances, master user,
raw APPEND and the doveadm oracle round-trip."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

if __name__ == '__main__':
    harness.main_wrapper(harness.selftest)
