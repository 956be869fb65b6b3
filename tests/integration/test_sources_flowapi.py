"""FlowAPISource: the real flowclient over real HTTP against FakeFlowAPI."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import jwt
import pytest

from autoflow.errors import DateSourceError, SettingsError
from autoflow.settings import Secret, Settings
from autoflow.sources import SourceContext, make_source
from autoflow.sources.flowapi import FlowAPISource
from autoflow.spec.models import SourceSpec
from tests.fake_flowapi import FakeFlowAPI, date_range

pytestmark = pytest.mark.filterwarnings("ignore:Communications with this server are NOT SECURE")

#: every logger that could see a request: ours, flowclient's, and the HTTP stacks'
WATCHED_LOGGERS = ("", "autoflow", "flowclient", "httpx", "httpcore", "hpack", "h2", "urllib3", "requests")

CALLS = date_range(date(2016, 1, 1), date(2016, 1, 7))
SMS = [date(2016, 1, 1), date(2016, 1, 2), date(2016, 1, 3), date(2016, 1, 5)]

MakeSource = Callable[..., FlowAPISource]


@pytest.fixture
def tokens_used() -> list[str]:
    return []


@pytest.fixture(autouse=True)
def token_never_leaks(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tokens_used: list[str]
) -> Iterator[None]:
    """Capture every log record at DEBUG; afterwards no record or output may contain a token."""
    for name in WATCHED_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    out, err = capsys.readouterr()
    records = caplog.get_records("setup") + caplog.get_records("call")  # .records is teardown's
    texts = [out, err] + [f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in records]
    for token in tokens_used:
        signature = token.rsplit(".", 1)[-1]
        # the whole token, and either half of its signature (the part that must stay secret)
        for piece in {token, signature[:20], signature[-20:]}:
            for text in texts:
                assert piece not in text


@pytest.fixture
def source(fake_flowapi: FakeFlowAPI, tokens_used: list[str]) -> MakeSource:
    """Build a FlowAPISource for the fake (a valid token unless one is given)."""

    def build(
        cdr_types: tuple[str, ...] | None = None,
        *,
        token: str | None = None,
        url: str | None = None,
        timeout: float = 10,
    ) -> FlowAPISource:
        token = fake_flowapi.make_token() if token is None else token
        tokens_used.append(token)
        return FlowAPISource(
            url or fake_flowapi.url, Secret(token), ssl_certificate=None, cdr_types=cdr_types, timeout=timeout
        )

    return build


def failure(source: FlowAPISource) -> str:
    """The message of the DateSourceError ``source.available_dates()`` raises; one line."""
    with pytest.raises(DateSourceError) as err:
        source.available_dates()
    message = str(err.value)
    assert "\n" not in message
    # nothing chained that could carry flowclient's text (which may quote the token)
    assert err.value.__cause__ is None and err.value.__context__ is None
    return message


# -- answers ------------------------------------------------------------------------------


def test_dates_per_type_for_all_types(
    source: MakeSource, fake_flowapi: FakeFlowAPI, caplog: pytest.LogCaptureFixture
) -> None:
    assert source().available_dates() == {"calls": CALLS, "sms": SMS}
    assert fake_flowapi.requests == ["/api/0/available_dates"]
    # the leak check below has teeth: it sees the HTTP stack's own records
    assert {"flowclient.client", "httpx"} <= {r.name for r in caplog.records}


def test_only_the_requested_cdr_types(source: MakeSource) -> None:
    assert source(("sms",)).available_dates() == {"sms": SMS}


def test_unknown_cdr_type_is_a_warning_not_an_error(
    source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    src = source(("calls", "topups", "mds"))
    result = src.available_dates()

    assert result == {"calls": CALLS}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("autoflow")]
    assert len(warnings) == 1
    assert "topups, mds" in warnings[0].getMessage()
    assert src.available_dates() == {"calls": CALLS}  # the next tick: the same news is not repeated
    assert len([r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("autoflow")]) == 1


def test_no_data_at_all_is_empty(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.dates = {}

    assert source().available_dates() == {}


def test_type_with_no_dates_is_kept_empty(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.dates = {"calls": [], "sms": ["2016-01-02"]}

    assert source(("calls", "sms")).available_dates() == {"calls": [], "sms": [date(2016, 1, 2)]}


def test_dates_are_parsed_sorted_and_deduplicated(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.dates = {"calls": ["2016-01-03", "2016-01-01", "2016-01-03", "2016-01-02T00:00:00"]}

    assert source().available_dates() == {"calls": [date(2016, 1, 1), date(2016, 1, 2), date(2016, 1, 3)]}


def test_each_call_asks_again(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    src = source(("calls",))
    assert src.available_dates() == {"calls": CALLS}

    fake_flowapi.dates["calls"].append(date(2016, 1, 8))

    assert src.available_dates() == {"calls": CALLS + [date(2016, 1, 8)]}
    assert len(fake_flowapi.requests) == 2


def test_a_date_that_is_not_iso_is_an_error(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.dates = {"calls": ["2016-01-01", "01/02/2016"]}

    message = failure(source())

    assert "'01/02/2016'" in message and "'calls'" in message


def test_describe_and_repr_carry_no_secret(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    src = source(("calls", "sms"))

    assert src.describe() == f"FlowAPI at {fake_flowapi.url} (calls, sms)"
    assert source().describe() == f"FlowAPI at {fake_flowapi.url} (all cdr types)"
    assert src._token.get() not in repr(src)


def test_make_source_builds_a_flowapi_source_from_settings(
    fake_flowapi: FakeFlowAPI, tokens_used: list[str], tmp_path: Path
) -> None:
    token = fake_flowapi.make_token()
    tokens_used.append(token)
    settings = Settings(flowapi_url=fake_flowapi.url, flowapi_token=Secret(token))

    src = make_source(SourceSpec(type="flowapi", options={"cdr_types": ["calls"]}), SourceContext(settings, tmp_path))

    assert src.available_dates() == {"calls": CALLS}


def test_make_source_without_flowapi_url_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="FLOWAPI_URL"):
        make_source(SourceSpec(type="flowapi"), SourceContext(Settings(), tmp_path))


# -- failures -----------------------------------------------------------------------------


def test_401_means_the_token_was_refused(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.mode = "401"

    message = failure(source())

    assert message.startswith(f"FlowAPI at {fake_flowapi.url} refused the token (401")
    assert "FLOWAPI_TOKEN" in message


def test_token_signed_with_another_key_is_refused(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    forged = fake_flowapi.make_token(secret="another-key-" + "x" * 40)

    message = failure(source(token=forged))

    assert "refused the token (401" in message


def test_token_without_available_dates_claim_is_refused(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    weak = fake_flowapi.make_token(claims={"user_claims": {"viewer": ["get_result&daily_location"]}})

    message = failure(source(token=weak))

    assert "refused the token (403" in message and "available_dates" in message


def test_500_is_an_error_and_flowclient_prints_nothing(
    source: MakeSource, fake_flowapi: FakeFlowAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_flowapi.mode = "500"

    message = failure(source())

    assert "(500" in message and fake_flowapi.url in message
    # flowclient dumps the response to stdout on errors; our hook answers before it can
    out, _ = capsys.readouterr()
    assert "*****" not in out


def test_invalid_json_is_an_error(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.mode = "garbage"

    assert "invalid JSON" in failure(source())


def test_wrong_path_is_a_404_error(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    message = failure(source(url=fake_flowapi.url + "/not-flowapi"))

    assert "(404)" in message and "FLOWAPI_URL" in message


@pytest.mark.timeout(60)
def test_a_hanging_server_times_out(source: MakeSource, fake_flowapi: FakeFlowAPI) -> None:
    fake_flowapi.mode = "hang"

    message = failure(source(timeout=0.3))

    assert "did not answer" in message and "0.3s" in message
    assert fake_flowapi.requests == ["/api/0/available_dates"]


def test_server_down_is_an_error(source: MakeSource) -> None:
    down = FakeFlowAPI().start()
    url = down.url
    down.stop()

    message = failure(source(url=url))

    assert message.startswith(f"FlowAPI at {url} could not be reached")
    assert "FLOWAPI_URL" in message


def test_tls_to_a_plain_http_server_is_an_error_naming_the_certificate_setting(
    source: MakeSource, fake_flowapi: FakeFlowAPI
) -> None:
    https_url = fake_flowapi.url.replace("http://", "https://")

    message = failure(source(url=https_url))

    assert "could not be reached" in message and "SSL_CERTIFICATE_FILE" in message


def test_unreadable_certificate_file_is_an_error(
    fake_flowapi: FakeFlowAPI, tokens_used: list[str], tmp_path: Path
) -> None:
    token = fake_flowapi.make_token()
    tokens_used.append(token)
    missing = tmp_path / "nope.pem"
    src = FlowAPISource(fake_flowapi.url, Secret(token), ssl_certificate=str(missing), cdr_types=None)

    message = failure(src)

    assert "SSL_CERTIFICATE_FILE" in message and str(missing) in message
    assert fake_flowapi.requests == []


@pytest.mark.parametrize(
    ("make_bad_token", "expected"),
    [
        (lambda fake: "not-a-jwt-but-a-long-secret-value-0123456789", "not a valid JWT"),
        (lambda fake: jwt.encode({"user_claims": {}}, fake.secret, algorithm="HS256"), "'sub' claim"),
    ],
    ids=["garbage", "no-identity"],
)
def test_bad_token_format_is_an_error_that_does_not_quote_it(
    source: MakeSource,
    fake_flowapi: FakeFlowAPI,
    make_bad_token: Callable[[FakeFlowAPI], str],
    expected: str,
) -> None:
    bad = make_bad_token(fake_flowapi)

    message = failure(source(token=bad))

    assert expected in message and "FLOWAPI_TOKEN" in message
    assert bad not in message
    assert fake_flowapi.requests == []


def test_the_ssl_context_is_loaded_once_and_again_when_the_certificate_file_changes(
    fake_flowapi: FakeFlowAPI, tokens_used: list[str], tmp_path: Path
) -> None:
    import os
    import shutil

    import certifi

    token = fake_flowapi.make_token()
    tokens_used.append(token)
    default = FlowAPISource(fake_flowapi.url, Secret(token), ssl_certificate=None, cdr_types=None)
    assert default._verify() is default._verify()  # not the CA bundle loaded again every tick

    certificate = tmp_path / "ca.pem"
    shutil.copyfile(certifi.where(), certificate)
    src = FlowAPISource(fake_flowapi.url, Secret(token), ssl_certificate=str(certificate), cdr_types=None)
    first = src._verify()
    assert src._verify() is first
    os.utime(certificate, ns=(1, 1))  # a renewed certificate
    assert src._verify() is not first
    assert src.available_dates()["calls"] == CALLS  # connections use it
