"""External signals: the external rule family, the signal pages and who may use them.

The rule tests also pass on SQLite (DATABASE_URL=sqlite:////tmp/signals.sqlite3),
where the same SQL runs with the backend's date and text functions.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from loans import access
from monitoring.models import (
    EarlyWarning,
    ExternalSignal,
    SignalKind,
    WarningStatus,
    WatchedIndustry,
)
from monitoring.rules import get_rule
from monitoring.rules.external import DESCRIPTION_EVIDENCE_LENGTH
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 6, 30)


@pytest.fixture
def north_borrower(branch_north):
    return BorrowerFactory(branch=branch_north, legal_name="Birch Bakery Ltd")


@pytest.fixture
def south_borrower(branch_south):
    return BorrowerFactory(branch=branch_south, legal_name="Cedar Freight Ltd")


@pytest.fixture
def south_officer(branch_south):
    return UserFactory(
        username="south-officer", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )


def make_signal(borrower, kind=SignalKind.LITIGATION, **fields) -> ExternalSignal:
    fields.setdefault("observed_on", date(2023, 6, 1))
    fields.setdefault("description", "Supplier sued over unpaid invoices, case 12/2023.")
    fields.setdefault("recorded_by", UserFactory(username="recorder"))
    return ExternalSignal.objects.create(borrower=borrower, kind=kind, **fields)


def warnings_of(rule_code: str) -> dict[int, EarlyWarning]:
    return {w.loan_id: w for w in EarlyWarning.objects.filter(rule_code=rule_code)}


# ---- Signal rules ------------------------------------------------------------


def test_signal_rule_fires_on_open_loans(north_borrower):
    first = LoanFactory(borrower=north_borrower)
    second = LoanFactory(borrower=north_borrower)
    other = LoanFactory()
    signal = make_signal(north_borrower)

    dispatch_close_of_day(AS_OF)

    warnings = warnings_of("EXT_LITIGATION")
    assert set(warnings) == {first.pk, second.pk}
    assert other.pk not in warnings
    warning = warnings[first.pk]
    assert warning.family == "external"
    assert warning.severity == "orange"
    assert warning.status == WarningStatus.OPEN
    assert warning.evidence["kind"] == "litigation"
    assert warning.evidence["signal_id"] == signal.pk
    assert warning.evidence["observed_on"] == "2023-06-01"
    assert warning.evidence["description"] == signal.description
    assert warning.evidence["open_signals"] == 1


@pytest.mark.parametrize(
    ("kind", "code", "severity"),
    [
        (SignalKind.ENFORCEMENT, "EXT_ENFORCEMENT", "red"),
        (SignalKind.PRODUCTION_HALT, "EXT_PRODUCTION_HALT", "red"),
        (SignalKind.TAX_ARREARS, "EXT_TAX_ARREARS", "orange"),
        (SignalKind.KEY_PERSON_LEAVING, "EXT_KEY_PERSON_LEAVING", "yellow"),
        (SignalKind.NEGATIVE_NEWS, "EXT_NEGATIVE_NEWS", "yellow"),
    ],
)
def test_each_kind_has_its_rule(north_borrower, kind, code, severity):
    loan = LoanFactory(borrower=north_borrower)
    make_signal(north_borrower, kind=kind)

    dispatch_close_of_day(AS_OF)

    codes = set(
        EarlyWarning.objects.filter(loan=loan, family="external").values_list(
            "rule_code", "severity"
        )
    )
    assert codes == {(code, severity)}


@pytest.mark.parametrize(
    ("observed_on", "ended_on", "fires"),
    [
        (AS_OF, None, True),
        (AS_OF + timedelta(days=1), None, False),
        (date(2023, 6, 1), AS_OF, False),
        (date(2023, 6, 1), AS_OF + timedelta(days=1), True),
        (date(2023, 6, 1), date(2023, 6, 10), False),
    ],
    ids=["observed-on-run-date", "observed-after", "ended-on-run-date", "ends-after", "ended"],
)
def test_signal_rule_date_boundaries(north_borrower, observed_on, ended_on, fires):
    loan = LoanFactory(borrower=north_borrower)
    make_signal(north_borrower, observed_on=observed_on, ended_on=ended_on)

    dispatch_close_of_day(AS_OF)

    assert (loan.pk in warnings_of("EXT_LITIGATION")) is fires


def test_signal_rule_skips_closed_loans(north_borrower):
    closed = LoanFactory(borrower=north_borrower, closed_on=date(2023, 5, 31))
    make_signal(north_borrower)

    dispatch_close_of_day(AS_OF)

    assert closed.pk not in warnings_of("EXT_LITIGATION")


def test_two_signals_give_one_warning(north_borrower):
    loan = LoanFactory(borrower=north_borrower)
    make_signal(north_borrower, observed_on=date(2023, 6, 20))
    earlier = make_signal(north_borrower, observed_on=date(2023, 6, 5))

    dispatch_close_of_day(AS_OF)

    warnings = EarlyWarning.objects.filter(loan=loan, rule_code="EXT_LITIGATION")
    assert warnings.count() == 1
    assert warnings[0].evidence["signal_id"] == earlier.pk
    assert warnings[0].evidence["open_signals"] == 2


def test_signal_description_is_truncated(north_borrower):
    LoanFactory(borrower=north_borrower)
    make_signal(north_borrower, description="x" * (DESCRIPTION_EVIDENCE_LENGTH + 50))

    dispatch_close_of_day(AS_OF)

    warning = EarlyWarning.objects.get(rule_code="EXT_LITIGATION")
    assert warning.evidence["description"] == "x" * DESCRIPTION_EVIDENCE_LENGTH


def test_ended_signal_leaves_warning_cleared(north_borrower):
    loan = LoanFactory(borrower=north_borrower)
    signal = make_signal(north_borrower)
    dispatch_close_of_day(AS_OF)
    signal.ended_on = AS_OF + timedelta(days=1)
    signal.save()

    dispatch_close_of_day(AS_OF + timedelta(days=1))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="EXT_LITIGATION")
    assert warning.status == WarningStatus.OPEN
    assert warning.cleared_on == AS_OF + timedelta(days=1)
    assert get_rule("EXT_LITIGATION").closes_itself is False


# ---- Watched industries ------------------------------------------------------


def test_watched_industry_matches_prefix(branch_north):
    watched = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="445299"))
    unwatched = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="446110"))
    shorter = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="445"))
    blank = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code=""))
    WatchedIndustry.objects.create(code_prefix="4452", reason="Specialty food stores closing")
    WatchedIndustry.objects.create(code_prefix="4461", reason="Old reason", active=False)

    dispatch_close_of_day(AS_OF)

    warnings = warnings_of("EXT_WATCHED_INDUSTRY")
    assert set(warnings) == {watched.pk}
    assert {unwatched.pk, shorter.pk, blank.pk}.isdisjoint(warnings)
    assert warnings[watched.pk].severity == "yellow"
    assert warnings[watched.pk].evidence["industry_code"] == "445299"
    assert warnings[watched.pk].evidence["code_prefix"] == "4452"
    assert warnings[watched.pk].evidence["reason"] == "Specialty food stores closing"


def test_watched_industry_names_longest_prefix(branch_north):
    loan = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="445299"))
    WatchedIndustry.objects.create(code_prefix="44", reason="Retail")
    WatchedIndustry.objects.create(code_prefix="4452", reason="Specialty food")

    dispatch_close_of_day(AS_OF)

    warnings = EarlyWarning.objects.filter(loan=loan, rule_code="EXT_WATCHED_INDUSTRY")
    assert warnings.count() == 1
    assert warnings[0].evidence["code_prefix"] == "4452"


def test_watched_industry_prefix_is_not_a_pattern(branch_north):
    loan = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="445299"))
    WatchedIndustry.objects.create(code_prefix="44_2", reason="Typed with an underscore")

    dispatch_close_of_day(AS_OF)

    assert loan.pk not in warnings_of("EXT_WATCHED_INDUSTRY")


def test_watched_industry_matches_letters_and_dots(branch_north):
    matching = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="C10.71"))
    no_dot = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="C1071"))
    lower = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="c10.71"))
    WatchedIndustry.objects.create(code_prefix="C10.", reason="Bakeries (NACE)")

    dispatch_close_of_day(AS_OF)

    assert set(warnings_of("EXT_WATCHED_INDUSTRY")) == {matching.pk}
    assert {no_dot.pk, lower.pk}.isdisjoint(warnings_of("EXT_WATCHED_INDUSTRY"))


def test_watched_industry_warning_resolves_itself(branch_north):
    loan = LoanFactory(borrower=BorrowerFactory(branch=branch_north, industry_code="445299"))
    industry = WatchedIndustry.objects.create(code_prefix="4452", reason="Specialty food")
    dispatch_close_of_day(AS_OF)
    industry.active = False
    industry.save()

    dispatch_close_of_day(AS_OF + timedelta(days=1))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="EXT_WATCHED_INDUSTRY")
    assert warning.status == WarningStatus.RESOLVED
    assert warning.cleared_on == AS_OF + timedelta(days=1)


# ---- Recording a signal ------------------------------------------------------


def test_officer_records_signal(client, officer, north_borrower):
    client.force_login(officer)
    url = reverse("monitoring:signal_create", args=[north_borrower.pk])

    response = client.post(
        url,
        {
            "kind": "tax_arrears",
            "observed_on": "2023-06-15",
            "description": " Tax office letter 7/23 ",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("loans:borrower_detail", args=[north_borrower.pk])
    signal = ExternalSignal.objects.get(borrower=north_borrower)
    assert signal.kind == SignalKind.TAX_ARREARS
    assert signal.observed_on == date(2023, 6, 15)
    assert signal.description == "Tax office letter 7/23"
    assert signal.recorded_by == officer
    assert signal.ended_on is None
    assert signal.history.get().history_user == officer


def test_signal_form_errors_keep_input(client, officer, north_borrower):
    client.force_login(officer)
    tomorrow = timezone.localdate() + timedelta(days=1)
    url = reverse("monitoring:signal_create", args=[north_borrower.pk])

    response = client.post(
        url, {"kind": "", "observed_on": tomorrow.isoformat(), "description": "Court notice 42"}
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["kind"] == ["Choose the kind of signal."]
    assert form.errors["observed_on"] == [
        f"Observed on {tomorrow.isoformat()} is after today, "
        f"{timezone.localdate().isoformat()}. Enter today's date or an earlier one."
    ]
    assert "description" not in form.errors
    html = response.content.decode()
    assert f'value="{tomorrow.isoformat()}"' in html
    assert "Court notice 42" in html
    assert '<label class="form-label" for="id_kind">Kind of signal</label>' in html
    assert 'aria-describedby="id_observed_on_helptext id_observed_on_error"' in html
    assert not ExternalSignal.objects.exists()


def test_signal_form_rejects_bad_date(client, officer, north_borrower):
    client.force_login(officer)
    url = reverse("monitoring:signal_create", args=[north_borrower.pk])

    response = client.post(
        url, {"kind": "litigation", "observed_on": "30/06/2023", "description": "   "}
    )

    form = response.context["form"]
    assert form.errors["observed_on"] == ["Enter the date observed as YYYY-MM-DD."]
    assert form.errors["description"] == [
        "Describe the signal: what happened and where it was found."
    ]
    assert 'value="30/06/2023"' in response.content.decode()


# ---- Ending a signal ---------------------------------------------------------


def test_officer_ends_signal(client, officer, north_borrower):
    signal = make_signal(north_borrower, observed_on=date(2023, 6, 1))
    client.force_login(officer)
    back = reverse("monitoring:signal_list")

    response = client.post(
        reverse("monitoring:signal_end", args=[signal.pk]),
        {"ended_on": "2023-06-01", "next": back},
    )

    assert response.status_code == 302
    assert response["Location"] == back
    signal.refresh_from_db()
    assert signal.ended_on == date(2023, 6, 1)
    assert signal.history.latest().history_user == officer


def test_end_before_observed_is_rejected(client, officer, north_borrower):
    signal = make_signal(north_borrower, observed_on=date(2023, 6, 1))
    client.force_login(officer)

    response = client.post(
        reverse("monitoring:signal_end", args=[signal.pk]), {"ended_on": "2023-05-31"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["ended_on"] == [
        "Ended on 2023-05-31 is before the signal was observed, on 2023-06-01. "
        "Enter 2023-06-01 or a later date."
    ]
    assert 'value="2023-05-31"' in response.content.decode()
    signal.refresh_from_db()
    assert signal.ended_on is None


def test_ended_signal_is_not_changed(client, officer, north_borrower):
    signal = make_signal(north_borrower, ended_on=date(2023, 6, 10))
    client.force_login(officer)

    response = client.post(
        reverse("monitoring:signal_end", args=[signal.pk]), {"ended_on": "2023-06-20"}
    )

    assert response.status_code == 200
    assert "This signal already ended on 2023-06-10" in response.content.decode()
    signal.refresh_from_db()
    assert signal.ended_on == date(2023, 6, 10)


# ---- Access ------------------------------------------------------------------


def test_other_branch_officer_gets_404(client, south_officer, north_borrower):
    signal = make_signal(north_borrower)
    client.force_login(south_officer)
    valid = {"kind": "litigation", "observed_on": "2023-06-01", "description": "Lawsuit"}
    create_url = reverse("monitoring:signal_create", args=[north_borrower.pk])
    end_url = reverse("monitoring:signal_end", args=[signal.pk])
    list_url = reverse("monitoring:borrower_signals", args=[north_borrower.pk])
    network_url = reverse("monitoring:borrower_network", args=[north_borrower.pk])

    responses = {
        "create form": client.get(create_url),
        "create": client.post(create_url, valid),
        "end form": client.get(end_url),
        "end": client.post(end_url, {"ended_on": "2023-06-02"}),
        "borrower signals": client.get(list_url),
        "network": client.get(network_url),
    }

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 404)
    assert ExternalSignal.objects.count() == 1
    signal.refresh_from_db()
    assert signal.ended_on is None


def test_other_branch_signal_not_listed(client, south_officer, north_borrower, south_borrower):
    make_signal(north_borrower, description="North lawsuit")
    make_signal(south_borrower, description="South lawsuit")
    client.force_login(south_officer)

    response = client.get(reverse("monitoring:signal_list"))

    html = response.content.decode()
    assert "South lawsuit" in html
    assert "North lawsuit" not in html


@pytest.mark.parametrize("role", ["auditor", "committee_member"])
def test_read_only_roles_cannot_post(client, request, role, north_borrower):
    signal = make_signal(north_borrower)
    client.force_login(request.getfixturevalue(role))
    valid = {"kind": "litigation", "observed_on": "2023-06-01", "description": "Lawsuit"}

    create = client.post(reverse("monitoring:signal_create", args=[north_borrower.pk]), valid)
    end = client.post(
        reverse("monitoring:signal_end", args=[signal.pk]), {"ended_on": "2023-06-02"}
    )
    listing = client.get(reverse("monitoring:signal_list"))

    assert create.status_code == 403
    assert end.status_code == 403
    assert listing.status_code == 200
    assert "Supplier sued" in listing.content.decode()
    assert reverse("monitoring:signal_end", args=[signal.pk]) not in listing.content.decode()
    assert ExternalSignal.objects.count() == 1
    signal.refresh_from_db()
    assert signal.ended_on is None


def test_risk_manager_records_for_any_branch(client, risk_manager, south_borrower):
    client.force_login(risk_manager)

    response = client.post(
        reverse("monitoring:signal_create", args=[south_borrower.pk]),
        {"kind": "negative_news", "observed_on": "2023-06-01", "description": "Press report"},
    )

    assert response.status_code == 302
    assert ExternalSignal.objects.get().recorded_by == risk_manager


# ---- Lists -------------------------------------------------------------------


def test_signal_list_filters(client, risk_manager, branch_north, north_borrower, south_borrower):
    make_signal(north_borrower, description="North open lawsuit")
    make_signal(north_borrower, description="North old lawsuit", ended_on=date(2023, 6, 5))
    make_signal(south_borrower, kind=SignalKind.TAX_ARREARS, description="South tax arrears")
    lent_by_north = BorrowerFactory(legal_name="Dune Mills Ltd")
    LoanFactory(borrower=lent_by_north, branch=branch_north)
    make_signal(lent_by_north, description="Lent by North")
    client.force_login(risk_manager)
    url = reverse("monitoring:signal_list")

    def listed(**params) -> set[str]:
        page = client.get(url, params).context["page_obj"]
        return {signal.description for signal in page}

    assert listed() == {"North open lawsuit", "South tax arrears", "Lent by North"}
    assert listed(state="ended") == {"North old lawsuit"}
    assert listed(state="any", kind="tax_arrears") == {"South tax arrears"}
    assert listed(state="any", branch=branch_north.pk) == {
        "North open lawsuit",
        "North old lawsuit",
        "Lent by North",
    }


def test_signal_list_rejects_foreign_branch(client, officer, branch_south, north_borrower):
    make_signal(north_borrower)
    client.force_login(officer)

    response = client.get(reverse("monitoring:signal_list"), {"branch": branch_south.pk})

    assert response.status_code == 200
    assert "branch" in response.context["filter_form"].errors
    assert list(response.context["page_obj"]) == []


def test_signal_list_query_count(client, risk_manager, django_assert_max_num_queries):
    for number in range(12):
        borrower = BorrowerFactory()
        make_signal(borrower, recorded_by=UserFactory(username=f"recorder-{number}"))
    client.force_login(risk_manager)

    with django_assert_max_num_queries(8):
        response = client.get(reverse("monitoring:signal_list"), {"state": "any"})

    assert len(response.context["page_obj"]) == 12


def test_borrower_page_loads_signal_card(client, officer, north_borrower):
    LoanFactory(borrower=north_borrower)
    make_signal(north_borrower, description="Court case 99")
    client.force_login(officer)
    card_url = reverse("monitoring:borrower_signals", args=[north_borrower.pk])

    page = client.get(reverse("loans:borrower_detail", args=[north_borrower.pk]))
    card = client.get(card_url, headers={"HX-Request": "true"})

    assert f'hx-get="{card_url}"' in page.content.decode()
    assert reverse("monitoring:borrower_network", args=[north_borrower.pk]) in page.content.decode()
    html = card.content.decode()
    assert "<html" not in html
    assert "Court case 99" in html
    assert reverse("monitoring:signal_create", args=[north_borrower.pk]) in html


def test_watched_industry_list_is_read_only(client, auditor):
    WatchedIndustry.objects.create(code_prefix="4452", reason="Specialty food")
    client.force_login(auditor)

    response = client.get(reverse("monitoring:signal_watched_industries"))

    html = response.content.decode()
    assert "Specialty food" in html
    assert "admin/monitoring/watchedindustry" not in html
