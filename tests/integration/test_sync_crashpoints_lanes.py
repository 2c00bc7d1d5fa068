#!/usr/bin/env python3
"""test_sync_crashpoints for a target without LITERAL+ and two append
lanes (--append-connections 2): bodies spooled, APPENDs sent by lane
threads; a crash after every durable step still ends, after a rerun, with
every message exactly once."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import test_sync_crashpoints as T  # noqa: E402


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_crashpoints_lanes')
    with H.Env() as env:
        T.test(env, ck, literal_plus=False, extra=['--append-connections', '2'])
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
