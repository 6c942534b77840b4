"""The AT protocol, sans I/O: answer parsers (table-driven, real modems' odd answers included),
the channel's line classification, and a fuzz that only AtParseError ever escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.uplink import at
from router.uplink.at import (
    AtBusy,
    AtChannel,
    AtParseError,
    AtResponse,
    FinalKind,
    FinalResult,
    UnsolicitedLine,
)
from router.uplink.events import Registration

# -- final result codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("OK", FinalResult(FinalKind.OK)),
        ("ok", FinalResult(FinalKind.OK)),
        ("ERROR", FinalResult(FinalKind.ERROR)),
        ("+CME ERROR: 10", FinalResult(FinalKind.CME_ERROR, "10")),
        ("+CME ERROR:10", FinalResult(FinalKind.CME_ERROR, "10")),
        ("+CME ERROR: SIM not inserted", FinalResult(FinalKind.CME_ERROR, "SIM not inserted")),
        ("+CMS ERROR: 500", FinalResult(FinalKind.CMS_ERROR, "500")),
        ("NO CARRIER", FinalResult(FinalKind.NO_CARRIER)),
        ("CONNECT", FinalResult(FinalKind.CONNECT)),
        ("CONNECT 14400000", FinalResult(FinalKind.CONNECT, "14400000")),
        ("CONNECT 7200000 ", FinalResult(FinalKind.CONNECT, "7200000")),
        ("BUSY", FinalResult(FinalKind.BUSY)),
        ("NO DIALTONE", FinalResult(FinalKind.NO_DIALTONE)),
        ("NO DIAL TONE", FinalResult(FinalKind.NO_DIALTONE)),
        ("+CSQ: 17,99", None),
        ("OKAY", None),
        ("RING", None),
        ("", None),
    ],
)
def test_final_result_codes(line: str, expected: FinalResult | None) -> None:
    assert at.parse_final(line) == expected


def test_cme_error_description_names_the_cause() -> None:
    assert at.FinalResult(FinalKind.CME_ERROR, "10").describe() == \
        "+CME ERROR: 10 (SIM not inserted)"
    assert at.FinalResult(FinalKind.CME_ERROR, "533").error_code == 533
    assert at.FinalResult(FinalKind.CME_ERROR, "SIM busy").error_code is None


# -- single answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rssi", "ber", "dbm"),
    [
        ("+CSQ: 20,99", 20, 99, -73),
        ("+CSQ: 0,0", 0, 0, -113),
        ("+CSQ: 31,7", 31, 7, -51),
        ("+CSQ: 99,99", 99, 99, None),  # Sierra / Huawei before registration: unknown
        ("+CSQ:17,99", 17, 99, -79),  # no space (Telit)
        ("+CSQ: 17, 99 ", 17, 99, -79),  # padded
        ("+CSQ: 12", 12, 99, -89),  # ber omitted (some ZTE firmwares)
    ],
)
def test_parse_csq(line: str, rssi: int, ber: int, dbm: int | None) -> None:
    quality = at.parse_csq(line)
    assert (quality.rssi, quality.ber, quality.dbm) == (rssi, ber, dbm)


@pytest.mark.parametrize("line", ["+CSQ: 32,99", "+CSQ: -1,99", "+CSQ: ,", "+CSQ:", "+CSQ: a,b",
                                  "+CSQ: 1,2,3", "+CREG: 0,1", "+CSQ: 20,8"])
def test_parse_csq_rejects(line: str) -> None:
    with pytest.raises(AtParseError):
        at.parse_csq(line)


def test_csq_to_dbm_is_27007_section_8_5() -> None:
    assert [at.csq_to_dbm(r) for r in (0, 1, 2, 30, 31)] == [-113, -111, -109, -53, -51]
    assert at.csq_to_dbm(99) is None and at.csq_to_dbm(32) is None


@pytest.mark.parametrize(
    ("line", "kind", "stat", "lac", "cell", "act"),
    [
        ("+CREG: 0,1", "CREG", Registration.HOME, None, None, None),  # read, n=0
        ("+CGREG: 0,5", "CGREG", Registration.ROAMING, None, None, None),
        ("+CREG: 1", "CREG", Registration.HOME, None, None, None),  # URC, n=1
        ("+CGREG: 2", "CGREG", Registration.SEARCHING, None, None, None),
        ('+CREG: 2,1,"00C3","0000A1B2",2', "CREG", Registration.HOME, "00C3", "0000A1B2", 2),
        ('+CREG: 1,"00C3","A1B2"', "CREG", Registration.HOME, "00C3", "A1B2", None),  # URC n=2
        ('+CREG: 5,"00C3","A1B2",7', "CREG", Registration.ROAMING, "00C3", "A1B2", 7),
        ('+CGREG: 2,1,"1A2B","01C3D4E5",6', "CGREG", Registration.HOME, "1A2B", "01C3D4E5", 6),
        ("+CREG: 2,1,00C3,A1B2", "CREG", Registration.HOME, "00C3", "A1B2", None),  # unquoted
        ('+CEREG: 0,3', "CEREG", Registration.DENIED, None, None, None),
        ("+CREG: 0,0", "CREG", Registration.NOT_SEARCHING, None, None, None),
        ("+CREG: 0,4", "CREG", Registration.UNKNOWN, None, None, None),
        ("+CREG: 0,6", "CREG", Registration.UNKNOWN, None, None, None),  # SMS only: no data
    ],
)
def test_parse_registration(line: str, kind: str, stat: Registration, lac: str | None,
                            cell: str | None, act: int | None) -> None:
    info = at.parse_registration(line)
    assert (info.kind, info.stat, info.lac, info.cell_id, info.access_technology) == \
        (kind, stat, lac, cell, act)


@pytest.mark.parametrize("line", ["+CREG:", "+CREG: x", "+CREG: 0,12", "+COPS: 0", "CREG: 1",
                                  "+CREG: 0,1,\"a\",\"b\",x"])
def test_parse_registration_rejects(line: str) -> None:
    with pytest.raises(AtParseError):
        at.parse_registration(line)


@pytest.mark.parametrize(
    ("line", "code"),
    [("+CPIN: READY", "READY"), ("+CPIN: SIM PIN", "SIM PIN"), ('+CPIN: "READY"', "READY"),
     ("+CPIN:SIM PUK", "SIM PUK")],
)
def test_parse_cpin(line: str, code: str) -> None:
    assert at.parse_cpin(line) == code


@pytest.mark.parametrize(
    ("line", "operator"),
    [
        ('+COPS: 0,0,"Lab Cell",2', "Lab Cell"),
        ('+COPS: 0,0,"T-Mobile D",7', "T-Mobile D"),
        ('+COPS: 0,2,"26201",7', "26201"),
        ('+COPS: 0,0,"Vodafone, UK"', "Vodafone, UK"),  # a comma inside the quotes
        ("+COPS: 0", None),  # not registered
        ('+COPS: 1,0,""', None),
    ],
)
def test_parse_cops(line: str, operator: str | None) -> None:
    assert at.parse_cops(line) == operator


def test_parse_cgdcont() -> None:
    lines = ('+CGDCONT: 1,"IP","internet","0.0.0.0",0,0', '+CGDCONT: 2,"IPV4V6","ims"')
    assert at.parse_cgdcont(lines) == {1: ("IP", "internet"), 2: ("IPV4V6", "ims")}
    with pytest.raises(AtParseError):
        at.parse_cgdcont(("+CGDCONT: 1",))


@pytest.mark.parametrize("apn", ["internet", "web.vodafone.de", "iot-1.example"])
def test_apn_accepted(apn: str) -> None:
    assert at.define_context_command(apn) == f'AT+CGDCONT=1,"IP","{apn}"'


@pytest.mark.parametrize("apn", ["", 'inter"net', "a,b", "has space", "x..y", "end.", "-x",
                                 "a" * 101, "internet\r"])
def test_apn_refused_before_it_reaches_the_modem(apn: str) -> None:
    with pytest.raises(ValueError, match="invalid APN"):
        at.check_apn(apn)


# -- the channel --------------------------------------------------------------------------------


def run_command(channel: AtChannel, command: str, answer: bytes) -> list[at.AtEvent]:
    assert channel.send(command) == command.encode() + b"\r"
    return channel.receive(answer)


def test_answer_with_echo_and_without() -> None:
    channel = AtChannel()
    assert run_command(channel, "AT", b"AT\r\r\nOK\r\n") == [
        AtResponse("AT", (), FinalResult(FinalKind.OK))]
    events = run_command(channel, "AT+CSQ", b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events == [AtResponse("AT+CSQ", ("+CSQ: 20,99",), FinalResult(FinalKind.OK))]
    assert channel.pending is None


def test_answer_split_across_reads_byte_by_byte() -> None:
    channel = AtChannel()
    channel.send("AT+COPS?")
    events: list[at.AtEvent] = []
    for byte in b'AT+COPS?\r\r\n+COPS: 0,0,"Lab Cell",2\r\n\r\nOK\r\n':
        events += channel.receive(bytes([byte]))
    assert events == [AtResponse("AT+COPS?", ('+COPS: 0,0,"Lab Cell",2',),
                                 FinalResult(FinalKind.OK))]


def test_unsolicited_codes_interleaved_are_not_mistaken_for_the_answer() -> None:
    channel = AtChannel()
    channel.send("AT+CSQ")
    events = channel.receive(b"\r\nRING\r\n\r\n+CSQ: 14,99\r\n\r\n+CREG: 2\r\n^RSSI:14\r\n"
                             b"^BOOT:12345,0,0,0,72\r\n\r\nOK\r\n")
    assert events == [
        UnsolicitedLine("RING"),
        UnsolicitedLine("+CREG: 2"),
        UnsolicitedLine("^RSSI:14"),
        UnsolicitedLine("^BOOT:12345,0,0,0,72"),
        AtResponse("AT+CSQ", ("+CSQ: 14,99",), FinalResult(FinalKind.OK)),
    ]


def test_the_commands_own_prefix_is_its_answer_even_if_it_could_be_unsolicited() -> None:
    channel = AtChannel()
    channel.send("AT+CREG?")
    events = channel.receive(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n")
    assert events == [AtResponse("AT+CREG?", ("+CREG: 0,1",), FinalResult(FinalKind.OK))]
    channel.send("AT+CPIN?")  # Quectel also sends +CPIN: READY unasked at boot
    assert channel.receive(b"\r\n+CPIN: READY\r\nOK\r\n")[0] == AtResponse(
        "AT+CPIN?", ("+CPIN: READY",), FinalResult(FinalKind.OK))


def test_nothing_outstanding_means_unsolicited_and_stray_finals_are_dropped() -> None:
    channel = AtChannel()
    assert channel.receive(b"\r\nRDY\r\n+CPIN: READY\r\nOK\r\nNO CARRIER\r\n") == [
        UnsolicitedLine("RDY"), UnsolicitedLine("+CPIN: READY"), UnsolicitedLine("NO CARRIER")]
    assert channel.dropped_lines == 1


def test_abandoned_command_late_answer_is_dropped() -> None:
    channel = AtChannel()
    channel.send("AT+COPS?")
    channel.abandon()
    assert channel.receive(b'\r\n+COPS: 0,0,"X",2\r\n\r\nOK\r\n\r\n+CREG: 1\r\n') == [
        UnsolicitedLine("+CREG: 1")]
    assert channel.dropped_lines == 2


def test_error_answers_complete_the_command() -> None:
    channel = AtChannel()
    [response] = run_command(channel, "AT+CPIN?", b"\r\n+CME ERROR: 10\r\n")
    assert isinstance(response, AtResponse) and not response.ok
    assert response.final.error_code == 10
    [response] = run_command(channel, "AT+FOO", b"AT+FOO\r\r\nERROR\r\n")
    assert isinstance(response, AtResponse) and response.final.kind is FinalKind.ERROR


def test_lone_cr_or_lf_line_endings() -> None:
    channel = AtChannel()
    [response] = run_command(channel, "AT+CSQ", b"+CSQ: 3,99\rOK\r")
    assert isinstance(response, AtResponse) and response.lines == ("+CSQ: 3,99",)
    [response] = run_command(channel, "AT+CSQ", b"\n+CSQ: 4,99\n\nOK\n")
    assert isinstance(response, AtResponse) and response.lines == ("+CSQ: 4,99",)


def test_connect_enters_data_mode_and_keeps_the_ppp_bytes() -> None:
    channel = AtChannel()
    events = run_command(channel, "ATD*99#", b"\r\nCONNECT 14400000\r\n~\xff\x7d\x23\xc0\x21")
    assert events == [AtResponse("ATD*99#", (), FinalResult(FinalKind.CONNECT, "14400000"))]
    assert channel.data_mode
    assert channel.data_after_connect == b"~\xff\x7d\x23\xc0\x21"
    assert channel.receive(b"~more") == []
    with pytest.raises(AtBusy):
        channel.send("AT")
    channel.leave_data_mode()
    assert run_command(channel, "AT", b"\r\nOK\r\n")[0] == AtResponse(
        "AT", (), FinalResult(FinalKind.OK))


def test_one_command_at_a_time() -> None:
    channel = AtChannel()
    channel.send("AT")
    with pytest.raises(AtBusy):
        channel.send("AT+CSQ")
    with pytest.raises(AtBusy):
        AtChannel().send("AT\rATZ")


def test_line_noise_without_end_is_dropped_not_hoarded() -> None:
    channel = AtChannel()
    assert channel.receive(b"x" * (at.MAX_LINE + 1)) == []
    assert channel.dropped_lines == 1
    assert channel.receive(b"\r\nRING\r\n") == [UnsolicitedLine("RING")]


def test_response_line_with_names_what_was_missing() -> None:
    response = AtResponse("AT+CSQ", ("garbage",), FinalResult(FinalKind.OK))
    with pytest.raises(AtParseError, match=r"\+CSQ:"):
        response.line_with("+CSQ:")


# -- fuzz -----------------------------------------------------------------------------------------

PARSERS = (at.parse_csq, at.parse_registration, at.parse_cpin, at.parse_cops,
           at.parse_huawei_rssi, lambda line: at.parse_cgdcont((line,)))
PREFIXES = st.sampled_from(["+CSQ:", "+CREG:", "+CGREG:", "+CEREG:", "+CPIN:", "+COPS:",
                            "^RSSI:", "+CGDCONT:", ""])


@given(PREFIXES, st.text(max_size=40))
def test_fuzz_parsers_raise_only_parse_errors(prefix: str, rest: str) -> None:
    for parser in PARSERS:
        with contextlib.suppress(AtParseError):
            parser(prefix + rest)


@given(st.lists(st.binary(max_size=64), max_size=8),
       st.sampled_from(["AT", "AT+CSQ", "AT+CREG?", "ATD*99#", None]))
def test_fuzz_channel_never_raises(chunks: list[bytes], command: str | None) -> None:
    channel = AtChannel()
    if command is not None:
        channel.send(command)
    for chunk in chunks:
        for event in channel.receive(chunk):
            assert isinstance(event, AtResponse | UnsolicitedLine)
