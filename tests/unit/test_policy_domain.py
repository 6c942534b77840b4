"""Domain detection: each fast conjecture, history merge/decay, the combiner, and proofs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.mip.advert import AdvertisementFlags, AgentAdvertisement, MobilityAgentAdvertisement
from router.policy.domain import (
    AdvertisementHeard,
    Attempt,
    Conjecture,
    ContextRecord,
    DomainParams,
    Proof,
    SmokeOutOutcome,
    Source,
    Verdict,
    combine,
    conjecture_from_address,
    conjecture_from_advertisements,
    conjecture_from_history,
    conjecture_from_smoke_out,
    history_confidence,
    issue_proof,
    merge_context,
    normalise_mac,
    try_order,
)

A = IPv4Address
INNER_HA = A("10.10.0.1")
OUTER_HA = A("192.0.2.1")
PARAMS = DomainParams(
    inner_home_agent=INNER_HA,
    outer_home_agent=OUTER_HA,
    inside_prefixes=(IPv4Network("10.0.0.0/8"),),
    outer_home_network=IPv4Network("192.0.2.0/24"),
    history_half_life=100.0,
)


# --- (a) addresses ---


@pytest.mark.parametrize(
    ("address", "gateway", "verdict"),
    [
        ("10.30.0.5", "10.30.0.1", Verdict.INSIDE),
        ("192.0.2.77", "192.0.2.1", Verdict.OUTER_HOME),
        ("198.51.100.9", "198.51.100.1", Verdict.OUTSIDE),
        ("100.64.0.7", None, Verdict.OUTSIDE),
        (None, None, Verdict.UNKNOWN),
    ],
)
def test_address_conjecture(address: str | None, gateway: str | None, verdict: Verdict) -> None:
    c = conjecture_from_address(
        A(address) if address else None, A(gateway) if gateway else None, PARAMS
    )
    assert c.verdict is verdict and c.source is Source.ADDRESS and c.reason


def test_inside_address_behind_outside_gateway_is_a_weaker_hint() -> None:
    consistent = conjecture_from_address(A("10.30.0.5"), A("10.30.0.1"), PARAMS)
    odd = conjecture_from_address(A("10.30.0.5"), A("198.51.100.1"), PARAMS)
    assert odd.verdict is Verdict.INSIDE and odd.confidence < consistent.confidence
    # An address alone never reaches the direct-first threshold: a DHCP server can lie.
    assert try_order(consistent)[0] is Attempt.SMOKE_OUT


# --- (b) advertisements ---


def _advert(source: str, *, home: bool = False, foreign: bool = False) -> AdvertisementHeard:
    return AdvertisementHeard(A(source), home, foreign, at=0.0)


def test_advertisement_from_decoded_advert() -> None:
    def advert(flags: AdvertisementFlags | None) -> AgentAdvertisement:
        ext = () if flags is None else (MobilityAgentAdvertisement(1, 600, flags),)
        return AgentAdvertisement(lifetime=1800, extensions=ext)

    heard = AdvertisementHeard.from_advert(INNER_HA, advert(AdvertisementFlags.H), 5.0)
    assert heard == AdvertisementHeard(INNER_HA, True, False, 5.0)
    fa = AdvertisementHeard.from_advert(
        A("10.30.0.1"), advert(AdvertisementFlags.F | AdvertisementFlags.R), 0
    )
    assert fa is not None and fa.foreign_agent and not fa.home_agent
    assert (
        AdvertisementHeard.from_advert(INNER_HA, advert(None), 0.0) is None
    )  # plain router advert


def test_advertisements() -> None:
    assert conjecture_from_advertisements([], PARAMS).verdict is Verdict.UNKNOWN
    inner = conjecture_from_advertisements([_advert("10.10.0.1", home=True)], PARAMS)
    assert inner.verdict is Verdict.INSIDE and "inner home agent" in inner.reason
    outer = conjecture_from_advertisements([_advert("192.0.2.1", home=True)], PARAMS)
    assert outer.verdict is Verdict.OUTER_HOME
    fa_in = conjecture_from_advertisements([_advert("10.30.0.1", foreign=True)], PARAMS)
    fa_out = conjecture_from_advertisements([_advert("198.51.100.1", foreign=True)], PARAMS)
    assert (fa_in.verdict, fa_out.verdict) == (Verdict.INSIDE, Verdict.OUTSIDE)
    # an advert from the inner HA's address without the H bit, or a plain router: no hint
    assert conjecture_from_advertisements([_advert("10.10.0.1")], PARAMS).verdict is Verdict.UNKNOWN
    # conflicting adverts (a rogue imitating the inner HA next to an outside FA) cancel out
    both = conjecture_from_advertisements(
        [_advert("10.10.0.1", home=True), _advert("198.51.100.1", foreign=True)], PARAMS
    )
    assert both.confidence < inner.confidence


# --- (c) smoke-out ---


def test_smoke_out() -> None:
    hit = conjecture_from_smoke_out(SmokeOutOutcome.REPLIED, 131, INNER_HA, PARAMS)
    assert hit.verdict is Verdict.INSIDE and "131" in hit.reason
    assert try_order(hit)[0] is Attempt.DIRECT_INNER
    signed = conjecture_from_smoke_out(
        SmokeOutOutcome.REPLIED, 131, INNER_HA, PARAMS, authenticated=True
    )
    assert signed.verdict is Verdict.INSIDE and signed.confidence > hit.confidence
    assert signed.confidence < 1.0  # still a conjecture: only a registration proves
    other_code = conjecture_from_smoke_out(SmokeOutOutcome.REPLIED, 136, INNER_HA, PARAMS)
    assert other_code.verdict is Verdict.INSIDE and other_code.confidence < hit.confidence
    imposter = conjecture_from_smoke_out(SmokeOutOutcome.REPLIED, 131, A("10.30.0.1"), PARAMS)
    assert imposter.verdict is Verdict.UNKNOWN
    timeout = conjecture_from_smoke_out(SmokeOutOutcome.TIMEOUT, None, None, PARAMS)
    unreachable = conjecture_from_smoke_out(SmokeOutOutcome.UNREACHABLE, None, None, PARAMS)
    assert timeout.verdict is unreachable.verdict is Verdict.OUTSIDE


# --- (d) history ---


def test_mac_normalisation() -> None:
    assert normalise_mac("AA-BB-CC-00-11-22") == "aa:bb:cc:00:11:22"
    for bad in ("aa:bb", "zz:bb:cc:00:11:22", "", "aabbcc001122"):
        with pytest.raises(ValueError, match="MAC"):
            normalise_mac(bad)


def test_merge_proven_wins_and_unproven_never_overwrites_proven() -> None:
    r = merge_context(None, "gateway", "AA-BB-CC-00-11-22", Verdict.INSIDE, 10.0, proven=True)
    r = merge_context(r, "gateway", r.mac, Verdict.OUTSIDE, 20.0, proven=False)
    assert (r.verdict, r.proven, r.times_seen, r.first_seen, r.last_seen) == (
        Verdict.INSIDE, True, 2, 10.0, 20.0,
    )  # fmt: skip
    r = merge_context(r, "gateway", r.mac, Verdict.OUTSIDE, 30.0, proven=True)
    assert (r.verdict, r.proven) == (Verdict.OUTSIDE, True)
    u = merge_context(None, "bssid", "02:00:00:00:01:00", Verdict.OUTSIDE, 0.0, proven=False)
    u = merge_context(u, "bssid", u.mac, Verdict.OUTER_HOME, 1.0, proven=False)
    assert u.verdict is Verdict.OUTER_HOME and not u.proven
    with pytest.raises(ValueError, match="kind"):
        merge_context(None, "switch", u.mac, Verdict.INSIDE, 0.0, proven=True)
    with pytest.raises(ValueError, match="unknown"):
        merge_context(None, "bssid", u.mac, Verdict.UNKNOWN, 0.0, proven=True)


def test_history_decays_and_proven_counts_more() -> None:
    proven = ContextRecord("gateway", "aa:bb:cc:00:11:22", Verdict.INSIDE, True, 0.0, 0.0, 3)
    hint = ContextRecord("gateway", "aa:bb:cc:00:11:22", Verdict.INSIDE, False, 0.0, 0.0, 3)
    assert history_confidence(proven, 0.0, 100.0) == pytest.approx(0.7)
    assert history_confidence(proven, 100.0, 100.0) == pytest.approx(0.35)
    assert history_confidence(proven, -50.0, 100.0) == pytest.approx(0.7)  # clock skew: no bonus
    assert history_confidence(hint, 0.0, 100.0) < history_confidence(proven, 0.0, 100.0)
    fresh = conjecture_from_history([proven], 0.0, PARAMS)
    assert fresh.verdict is Verdict.INSIDE and try_order(fresh)[0] is Attempt.DIRECT_INNER
    stale = conjecture_from_history([proven], 1000.0, PARAMS)
    assert try_order(stale)[0] is Attempt.SMOKE_OUT  # old history only earns a smoke-out
    assert conjecture_from_history([], 0.0, PARAMS).verdict is Verdict.UNKNOWN


# --- combining ---


def test_combine_noisy_or_and_conflict() -> None:
    a = Conjecture(Verdict.INSIDE, 0.4, "a", Source.ADDRESS)
    b = Conjecture(Verdict.INSIDE, 0.5, "b", Source.ADVERTISEMENT)
    both = combine([a, b])
    assert both.verdict is Verdict.INSIDE and both.confidence == pytest.approx(0.7)
    assert "a" in both.reason and "b" in both.reason
    tie = combine([a, Conjecture(Verdict.OUTSIDE, 0.4, "c", Source.HISTORY)])
    assert tie.verdict is Verdict.UNKNOWN and "conflicting" in tie.reason
    assert combine([]).verdict is Verdict.UNKNOWN


def test_conjecture_confidence_is_bounded() -> None:
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="confidence"):
            Conjecture(Verdict.INSIDE, bad, "x")


conjectures = st.lists(
    st.builds(
        Conjecture,
        st.sampled_from(list(Verdict)),
        st.floats(0.0, 1.0),
        st.text(max_size=3),
        st.sampled_from(list(Source)),
    ),
    max_size=6,
)


@given(conjectures, st.randoms(use_true_random=False))
def test_combine_is_order_independent_and_bounded(cs: list[Conjecture], rnd: object) -> None:
    combined = combine(cs)
    shuffled = list(cs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = combine(shuffled)
    assert (again.verdict, again.confidence) == pytest.approx(
        (combined.verdict, combined.confidence)
    )
    assert 0.0 <= combined.confidence <= 1.0
    # whatever the hints, the VPN path stays in the plan: conjectures never skip it
    assert try_order(combined)[-1] is Attempt.VPN_PATH


# --- proof ---


def test_proof_only_from_issue_proof() -> None:
    with pytest.raises(TypeError, match="authenticated"):
        Proof("wlan", 1, A("10.30.0.5"), 0.0)
    proof = issue_proof("wlan", 1, A("10.30.0.5"), 0.0)
    assert proof.holds_for(1, A("10.30.0.5"))
    assert not proof.holds_for(2, A("10.30.0.5"))  # a later uplink attachment
    assert not proof.holds_for(1, A("10.30.0.6"))


def test_no_single_forgeable_hint_skips_the_smoke_out() -> None:
    """Address, advert, unproven history: each alone earns a smoke-out, not a direct try."""
    hints = [
        conjecture_from_address(A("10.30.0.5"), A("10.30.0.1"), PARAMS),
        conjecture_from_advertisements([_advert("10.10.0.1", home=True)], PARAMS),
        conjecture_from_history(
            [ContextRecord("bssid", "02:00:00:00:01:00", Verdict.INSIDE, False, 0.0, 0.0, 9)],
            0.0,
            PARAMS,
        ),
    ]
    for hint in hints:
        assert hint.verdict is Verdict.INSIDE
        assert try_order(combine([hint]))[0] is Attempt.SMOKE_OUT, hint
    # together they are enough to try the (harmless) direct registration first
    assert try_order(combine(hints))[0] is Attempt.DIRECT_INNER
