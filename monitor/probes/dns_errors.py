"""Exceptions of our own DNS wire handling (apart from dnspython's), mapped in _classify."""

from __future__ import annotations

import dns.exception


class WrongQueryId(dns.exception.DNSException):
    """A reply whose id is not the query's: a blind spoofer guessing, or a broken middlebox."""
