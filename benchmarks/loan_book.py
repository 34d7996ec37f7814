"""Synthetic loan book for the close-of-day benchmark, generated set-wise in PostgreSQL.

Every statement is an INSERT ... SELECT over generate_series, so a million
loans take minutes, not hours. Each loan gets 24 monthly equal-principal
instalments. A hash of the loan id draws its repayment profile:

| share | profile      | what was paid by the as-of date                               |
| ----- | ------------ | ------------------------------------------------------------- |
| 70%   | on_time      | every instalment on its due date                              |
| 10%   | late         | every instalment 1-20 days after its due date                 |
| 5%    | partial      | on time, but the latest instalment only half of its principal |
| 9%    | arrears      | on time until 1-18 months before the as-of date, then nothing |
| 1%    | arrears      | as above, and the loan is restructured                        |
| 2%    | written_off  | nothing in the 6 months before a write-off                    |
| 3%    | prepaid      | on time until an early payoff that settled the rest           |

Loans are 1 to 900 days old, so about a fifth have reached maturity: those
paid in full are `paid_off`. Each paid or part-paid instalment has one
repayment and one allocation row dated on the payment date, and the
denormalised `principal_paid`, `interest_paid` and `settled_on` agree with
them. Written-off loans younger than 240 days, and prepaid loans younger
than 60 days, fall back to `arrears` and `on_time`. Borrowers number half
the loans and are drawn at random, so most have one to four loans and
debtor contagion has work to do. Borrowers get one of 40 NAICS industry
codes at random. Each of the two active `WatchedIndustry` rows matches one
code (2.5% of the borrowers), and an inactive row matches another.

Collateral, guarantees and external signals scale with the loans. The
figures below are for 1,000,000 loans:

- 300,000 collateral items of every `CollateralKind`, each with 1 to 3
  valuations one revaluation interval apart (commercial real estate 365
  days, residential 1,095, deposits 365, movable kinds 182). The latest
  valuation of 10% is older than its interval, 8% of those with two or more
  valuations dropped 23-45% at the latest one, and 6% are worth less than
  the loan's principal. Each item is pledged to a random loan, 15% also to
  a second random loan, with shares summing to 1 or 0.8. Insurable kinds
  (real estate, equipment, vehicles, inventory) have an insurance expiry:
  8% expired, 7% within 30 days. `ltv_limit` is set by kind.
- About 500,000 guarantees. About 400,000 come from 158,000 persons and
  companies that are not borrowers (1 to 4 each, on random loans) and three
  public guarantee schemes. 100,000 come from borrowers, on an open loan
  of another borrower: 1,000 guarantee circles of 2 to 5 borrowers, 2,000
  chains of 3 to 6 borrowers, and stars (one borrower guaranteeing 1 to 4
  others that guarantee no one) for the rest, so the network is mostly
  trees. Borrowers in different structures are distinct. A guarantee runs
  from the loan's disbursement to 180 days after its maturity (50%), has no
  end (45%) or ended one year after disbursement (5%). Half of the
  guarantors have a net worth: a tenth of those 0.1 to 0.5 times the sum
  they guarantee (over-extended), the rest 1.5 to 6 times.
- 5,000 external signals on random borrowers, observed in the year before
  the as-of date, 30% of them ended by then, recorded by the user
  `benchmark-recorder`.
"""

from __future__ import annotations

import logging
import time
from datetime import date

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, transaction

logger = logging.getLogger(__name__)

INSTALMENTS_PER_LOAN = 24
BRANCHES = 8
MAX_AGE_DAYS = 900

_PLAN = """
    CREATE TEMPORARY TABLE bench_plan AS
    WITH base AS (
        SELECT g AS loan_id,
               1 + abs(hashtext('borrower:' || g)) %% %(borrowers)s AS borrower_id,
               abs(hashtext('profile:' || g)) %% 1000 AS draw,
               %(as_of)s::date - (1 + abs(hashtext('age:' || g)) %% %(max_age_days)s)
                   AS disbursement_date,
               1 + abs(hashtext('lag:' || g)) %% 20 AS lag_days,
               1 + abs(hashtext('arrears:' || g)) %% 18 AS arrears_months,
               abs(hashtext('close:' || g)) AS close_draw,
               (1000 + abs(hashtext('amount:' || g)) %% 4990) * 100.00 AS principal,
               (4 + abs(hashtext('rate:' || g)) %% 9) / 100.0 AS annual_rate
        FROM generate_series(1, %(loans)s) AS g
    ),
    aged AS (
        SELECT base.*,
               (disbursement_date + %(periods)s * interval '1 month')::date AS maturity_date,
               %(as_of)s::date - disbursement_date AS age_days
        FROM base
    ),
    profiled AS (
        SELECT aged.*,
               CASE
                   WHEN draw < 700 THEN 'on_time'
                   WHEN draw < 800 THEN 'late'
                   WHEN draw < 850 THEN 'partial'
                   WHEN draw < 950 THEN 'arrears'
                   WHEN draw < 970 AND age_days >= 240 THEN 'written_off'
                   WHEN draw < 970 THEN 'arrears'
                   WHEN age_days >= 60 THEN 'prepaid'
                   ELSE 'on_time'
               END AS profile
        FROM aged
    )
    SELECT profiled.*,
           CASE
               WHEN profile = 'written_off'
                   THEN disbursement_date + 180 + close_draw %% (age_days - 179)
               WHEN profile = 'prepaid'
                   THEN disbursement_date + 30 + close_draw %% (age_days - 29)
               WHEN profile = 'on_time' AND maturity_date <= %(as_of)s::date
                   THEN maturity_date
               WHEN profile = 'late' AND maturity_date + lag_days <= %(as_of)s::date
                   THEN maturity_date + lag_days
               WHEN profile = 'partial'
                    AND maturity_date <= (%(as_of)s::date - interval '1 month')::date
                   THEN maturity_date
           END AS closed_on
    FROM profiled
"""

_BRANCHES = """
    INSERT INTO loans_branch (id, code, name, region)
    SELECT b, 'BENCH-' || b, 'Benchmark branch ' || b, 'Region ' || (1 + b %% 3)
    FROM generate_series(1, %(branches)s) AS b
"""

_BORROWERS = """
    INSERT INTO loans_borrower (
        id, registration_number, legal_name, industry_code, size_class, region, city,
        postal_code, employees, annual_revenue, founded_on, is_new_business, group_name,
        branch_id
    )
    SELECT b, 'BENCH-B' || b, 'Benchmark borrower ' || b,
           (%(industry_codes)s::text[])[1 + abs(hashtext('industry:' || b)) %% %(industry_count)s],
           (ARRAY['micro', 'small', 'medium'])[1 + b %% 3], '', '', '', 5 + b %% 200,
           (50000 + b %% 1000 * 1000) * 1.00, DATE '2000-01-01' + b %% 7000, FALSE, '',
           1 + b %% %(branches)s
    FROM generate_series(1, %(borrowers)s) AS b
"""

_LOANS = """
    INSERT INTO loans_loan (
        id, contract_number, product, purpose, currency, principal, disbursement_date,
        maturity_date, annual_rate, day_count, repayment_method, frequency, status, closed_on,
        risk_class, ifrs9_stage, source, borrower_id, branch_id, officer_id
    )
    SELECT loan_id, 'BENCH-L' || loan_id,
           (ARRAY['working_capital', 'fixed_asset', 'trade_finance'])[1 + loan_id %% 3], '',
           'USD', principal, disbursement_date, maturity_date, annual_rate, 'act_360',
           'equal_principal', 'monthly',
           CASE
               WHEN profile = 'written_off' THEN 'written_off'
               WHEN closed_on IS NOT NULL THEN 'paid_off'
               WHEN profile = 'arrears' AND draw >= 940 THEN 'restructured'
               ELSE 'active'
           END,
           closed_on, 1, 1, 'benchmark', borrower_id, 1 + borrower_id %% %(branches)s, NULL
    FROM bench_plan
    ORDER BY loan_id
"""

# The paid-on date of each instalment by profile; NULL while unpaid.
_PAID_ON = """
    CASE p.profile
        WHEN 'on_time' THEN CASE WHEN s.due_date <= %(as_of)s::date THEN s.due_date END
        WHEN 'late' THEN CASE WHEN s.due_date + p.lag_days <= %(as_of)s::date
                              THEN s.due_date + p.lag_days END
        WHEN 'partial' THEN CASE WHEN s.due_date <= (%(as_of)s::date - interval '1 month')::date
                                 THEN s.due_date END
        WHEN 'arrears' THEN CASE WHEN s.due_date <= (%(as_of)s::date
                                     - p.arrears_months * interval '1 month')::date
                                 THEN s.due_date END
        WHEN 'written_off' THEN CASE WHEN s.due_date <= (p.closed_on - interval '6 months')::date
                                     THEN s.due_date END
        WHEN 'prepaid' THEN LEAST(s.due_date, p.closed_on)
    END
"""

_INSTALMENTS = f"""
    INSERT INTO loans_instalment (
        id, loan_id, number, due_date, principal_due, interest_due, principal_paid,
        interest_paid, settled_on
    )
    SELECT x.id, x.loan_id, x.number, x.due_date, x.principal_due, x.interest_due,
           CASE WHEN x.paid_on IS NOT NULL THEN x.principal_due
                WHEN x.part_paid THEN ROUND(x.principal_due / 2, 2) ELSE 0 END,
           CASE WHEN x.paid_on IS NOT NULL OR x.part_paid THEN x.interest_due ELSE 0 END,
           x.paid_on
    FROM (
        SELECT s.*, {_PAID_ON} AS paid_on,
               p.profile = 'partial'
                   AND s.due_date > (%(as_of)s::date - interval '1 month')::date
                   AND s.due_date <= %(as_of)s::date AS part_paid
        FROM bench_plan p
        CROSS JOIN LATERAL (
            SELECT (p.loan_id - 1) * %(periods)s + k AS id, p.loan_id, k AS number,
                   (p.disbursement_date + k * interval '1 month')::date AS due_date,
                   CASE WHEN k = %(periods)s
                        THEN p.principal - (%(periods)s - 1) * ROUND(p.principal / %(periods)s, 2)
                        ELSE ROUND(p.principal / %(periods)s, 2) END AS principal_due,
                   ROUND((p.principal - (k - 1) * ROUND(p.principal / %(periods)s, 2))
                         * p.annual_rate / 12, 2) AS interest_due
            FROM generate_series(1, %(periods)s) AS k
        ) s
    ) x
    ORDER BY x.id
"""

# One repayment and one allocation per paid or part-paid instalment, sharing
# the instalment's id; part-paid instalments were paid on their due date.
_REPAYMENTS = """
    INSERT INTO loans_repayment (id, loan_id, value_date, amount, kind, reference, unallocated)
    SELECT id, loan_id, COALESCE(settled_on, due_date), principal_paid + interest_paid,
           'regular', 'BENCH-' || number, 0
    FROM loans_instalment
    WHERE principal_paid + interest_paid > 0
    ORDER BY id
"""

_ALLOCATIONS = """
    INSERT INTO loans_repaymentallocation (
        id, repayment_id, instalment_id, loan_id, value_date, penalty, interest, principal
    )
    SELECT id, id, id, loan_id, COALESCE(settled_on, due_date), 0, interest_paid, principal_paid
    FROM loans_instalment
    WHERE principal_paid + interest_paid > 0
    ORDER BY id
"""

_WRITE_OFFS = """
    INSERT INTO loans_writeoff (loan_id, written_off_on, principal, interest, reason)
    SELECT p.loan_id, p.closed_on, SUM(i.principal_due - i.principal_paid),
           SUM(CASE WHEN i.due_date <= p.closed_on THEN i.interest_due - i.interest_paid
                    ELSE 0 END),
           'Benchmark write-off'
    FROM bench_plan p JOIN loans_instalment i ON i.loan_id = p.loan_id
    WHERE p.profile = 'written_off'
    GROUP BY p.loan_id, p.closed_on
"""

# NAICS 2017 codes the borrowers are spread over, evenly.
INDUSTRY_CODES = (
    "236118", "236220", "237310", "238210", "238220", "238990", "311811", "312120",
    "321113", "323111", "332710", "333111", "337110", "423430", "423710", "424410",
    "441110", "441120", "444110", "445110", "448140", "453220", "484110", "484121",
    "492110", "493110", "531120", "541110", "541211", "541330", "541511", "541611",
    "561720", "611610", "621111", "621210", "713940", "721110", "722511", "811111",
)  # fmt: skip

# Watch-list prefixes: used-car dealers and restaurants (one code each of the
# 40 above) are active, non-residential construction is not.
_WATCHED_INDUSTRIES = """
    INSERT INTO monitoring_watchedindustry (id, code_prefix, reason, active)
    VALUES (1, '44112', 'Benchmark: used-car dealers under price pressure', TRUE),
           (2, '7225', 'Benchmark: restaurants with falling margins', TRUE),
           (3, '2362', 'Benchmark: non-residential construction, no longer watched', FALSE)
"""

# One open loan per borrower that has any, with the borrower's place in a
# random order. Guarantees between borrowers are laid out over these places.
_ANCHORS = """
    CREATE TEMPORARY TABLE bench_anchor AS
    SELECT borrower_id, loan_id,
           ROW_NUMBER() OVER (ORDER BY hashtext('anchor:' || borrower_id), borrower_id) AS place
    FROM (
        SELECT DISTINCT ON (borrower_id) borrower_id, loan_id
        FROM bench_plan
        WHERE closed_on IS NULL
        ORDER BY borrower_id, loan_id
    ) open_borrowers;
    CREATE UNIQUE INDEX bench_anchor_place ON bench_anchor (place);
    ANALYZE bench_anchor
"""

# Edges "the borrower at place src guarantees the open loan of the one at dst".
# Circle c has 2 + (c - 1) mod 4 members and chain h has 3 + (h - 1) mod 4, so
# four circles take 14 places and four chains 18. Star t has 1 + (t - 1) mod 4 leaves.
_NETWORK_EDGES = """
    CREATE TEMPORARY TABLE bench_edge (src integer NOT NULL, dst integer NOT NULL);
    INSERT INTO bench_edge
    SELECT x.base + i, x.base + i %% x.size + 1
    FROM (
        SELECT 2 + (c - 1) %% 4 AS size,
               14 * ((c - 1) / 4) + (ARRAY[0, 2, 5, 9])[1 + (c - 1) %% 4] AS base
        FROM generate_series(1, %(circles)s) AS c
    ) x
    CROSS JOIN LATERAL generate_series(1, x.size) AS i;
    INSERT INTO bench_edge
    SELECT x.base + i, x.base + i + 1
    FROM (
        SELECT 3 + (h - 1) %% 4 AS size,
               %(chain_base)s + 18 * ((h - 1) / 4) + (ARRAY[0, 3, 7, 12])[1 + (h - 1) %% 4] AS base
        FROM generate_series(1, %(chains)s) AS h
    ) x
    CROSS JOIN LATERAL generate_series(1, x.size - 1) AS i;
    INSERT INTO bench_edge
    SELECT %(star_base)s + t, x.leaf_base + j
    FROM (
        SELECT t, 1 + (t - 1) %% 4 AS size,
               %(star_base)s + %(stars)s + 10 * ((t - 1) / 4)
                   + (ARRAY[0, 1, 3, 6])[1 + (t - 1) %% 4] AS leaf_base
        FROM generate_series(1, %(stars)s) AS t
    ) x
    CROSS JOIN LATERAL generate_series(1, x.size) AS j
"""

# Guarantor ids 1 to outside_guarantors are persons and companies, then come
# the public schemes, then the borrowers that guarantee.
_GUARANTORS = """
    INSERT INTO loans_guarantor (id, kind, name, registration_number, borrower_id, net_worth)
    SELECT g,
           CASE WHEN g > %(outside_guarantors)s THEN 'public_scheme'
                WHEN abs(hashtext('guarantor:' || g)) %% 100 < 65 THEN 'person'
                ELSE 'company' END,
           CASE WHEN g > %(outside_guarantors)s THEN 'Benchmark guarantee scheme ' || g
                ELSE 'Benchmark guarantor ' || g END,
           'BENCH-G' || g, NULL, NULL
    FROM generate_series(1, %(outside_guarantors)s + %(schemes)s) AS g;

    CREATE TEMPORARY TABLE bench_borrower_guarantor AS
    SELECT a.place, a.borrower_id,
           %(outside_guarantors)s + %(schemes)s + ROW_NUMBER() OVER (ORDER BY a.place) AS id
    FROM (SELECT DISTINCT src FROM bench_edge) e JOIN bench_anchor a ON a.place = e.src;

    INSERT INTO loans_guarantor (id, kind, name, registration_number, borrower_id, net_worth)
    SELECT id, 'company', 'Benchmark borrower ' || borrower_id, 'BENCH-G' || id, borrower_id, NULL
    FROM bench_borrower_guarantor
    ORDER BY id
"""

# Type, amount or percentage, and validity of the guarantee drawn by {key} on loan `p`.
_GUARANTEE_TERMS = """
    CASE WHEN abs(hashtext('gtype:' || {key})) %% 10 < 7 THEN 'joint_several' ELSE 'general' END,
    CASE WHEN abs(hashtext('gform:' || {key})) %% 10 < 7
         THEN ROUND(p.principal * (50 + abs(hashtext('gshare:' || {key})) %% 51) / 100, 2) END,
    CASE WHEN abs(hashtext('gform:' || {key})) %% 10 >= 7
         THEN (50 + abs(hashtext('gshare:' || {key})) %% 51)::numeric END,
    p.disbursement_date,
    CASE WHEN abs(hashtext('gvalid:' || {key})) %% 20 = 0
             THEN p.disbursement_date + 365
         WHEN abs(hashtext('gvalid:' || {key})) %% 20 < 10 THEN NULL
         ELSE p.maturity_date + 180 END
"""

_OUTSIDE_GUARANTEES = f"""
    INSERT INTO loans_guarantee (
        loan_id, guarantor_id, guarantee_type, amount, percentage, valid_from, valid_to
    )
    SELECT DISTINCT ON (x.guarantor_id, x.loan_id)
           x.loan_id, x.guarantor_id,
           {_GUARANTEE_TERMS.format(key="x.guarantor_id || ':' || x.loan_id")}
    FROM (
        SELECT g AS guarantor_id,
               1 + abs(hashtext('guaranteed:' || g || ':' || k)) %% %(loans)s AS loan_id
        FROM generate_series(1, %(outside_guarantors)s) AS g
        CROSS JOIN LATERAL generate_series(1, 1 + abs(hashtext('guarantees:' || g)) %% 4) AS k
        UNION ALL
        SELECT %(outside_guarantors)s + s,
               1 + abs(hashtext('scheme:' || s || ':' || k)) %% %(loans)s
        FROM generate_series(1, %(schemes)s) AS s
        CROSS JOIN generate_series(1, %(scheme_guarantees)s) AS k
    ) x
    JOIN bench_plan p ON p.loan_id = x.loan_id
    ORDER BY x.guarantor_id, x.loan_id
"""

_BORROWER_GUARANTEES = f"""
    INSERT INTO loans_guarantee (
        loan_id, guarantor_id, guarantee_type, amount, percentage, valid_from, valid_to
    )
    SELECT d.loan_id, g.id,
           {_GUARANTEE_TERMS.format(key="g.id || ':' || d.loan_id")}
    FROM bench_edge e
    JOIN bench_borrower_guarantor g ON g.place = e.src
    JOIN bench_anchor d ON d.place = e.dst
    JOIN bench_plan p ON p.loan_id = d.loan_id
    ORDER BY g.id, d.loan_id
"""

# Exposure counts every guarantee, whether or not it is valid on the as-of date.
_NET_WORTH = """
    UPDATE loans_guarantor g
    SET net_worth = CASE
        WHEN g.kind = 'public_scheme' THEN 5000000000.00
        WHEN abs(hashtext('overextended:' || g.id)) %% 10 = 0
            THEN ROUND(e.exposure * (10 + abs(hashtext('worth:' || g.id)) %% 41) / 100, 2)
        ELSE ROUND(e.exposure * (150 + abs(hashtext('worth:' || g.id)) %% 451) / 100, 2)
    END
    FROM (
        SELECT gt.guarantor_id,
               SUM(COALESCE(gt.amount, ROUND(p.principal * gt.percentage / 100, 2))) AS exposure
        FROM loans_guarantee gt JOIN bench_plan p ON p.loan_id = gt.loan_id
        GROUP BY gt.guarantor_id
    ) e
    WHERE e.guarantor_id = g.id
      AND (g.kind = 'public_scheme' OR abs(hashtext('networth:' || g.id)) %% 2 = 0)
"""

# Revaluation interval in days and loan-to-value limit of each collateral kind.
_COLLATERAL_PLAN = """
    CREATE TEMPORARY TABLE bench_collateral AS
    SELECT d.*,
           CASE d.kind WHEN 'commercial_real_estate' THEN 365
                       WHEN 'residential_real_estate' THEN 1095
                       WHEN 'deposits' THEN 365
                       ELSE 182 END AS interval_days,
           CASE d.kind WHEN 'commercial_real_estate' THEN 0.70
                       WHEN 'residential_real_estate' THEN 0.80
                       WHEN 'equipment' THEN 0.60
                       WHEN 'vehicles' THEN 0.60
                       WHEN 'inventory' THEN 0.50
                       WHEN 'receivables' THEN 0.70
                       WHEN 'deposits' THEN 0.95
                       ELSE 0.50 END AS ltv_limit,
           ROUND(p.principal * CASE
               WHEN abs(hashtext('cunder:' || d.c)) %% 100 < 6
                   THEN (60 + abs(hashtext('cvalue:' || d.c)) %% 50) / 100.0
               ELSE (120 + abs(hashtext('cvalue:' || d.c)) %% 140) / 100.0
           END, 2) AS latest_value,
           p.borrower_id
    FROM (
        SELECT c,
               CASE WHEN draw < 15 THEN 'commercial_real_estate'
                    WHEN draw < 30 THEN 'residential_real_estate'
                    WHEN draw < 50 THEN 'equipment'
                    WHEN draw < 65 THEN 'vehicles'
                    WHEN draw < 77 THEN 'inventory'
                    WHEN draw < 89 THEN 'receivables'
                    WHEN draw < 97 THEN 'deposits'
                    ELSE 'equity' END AS kind,
               primary_loan_id,
               CASE WHEN second_loan_id <> primary_loan_id THEN second_loan_id END
                   AS second_loan_id,
               1 + abs(hashtext('cvaluations:' || c)) %% 3 AS valuations,
               abs(hashtext('cstale:' || c)) %% 100 < 10 AS stale,
               abs(hashtext('cdrop:' || c)) %% 100 < 8 AS value_drop,
               abs(hashtext('cinsurance:' || c)) %% 100 AS insurance_draw,
               abs(hashtext('cdays:' || c)) AS day_draw
        FROM (
            SELECT c, abs(hashtext('ckind:' || c)) %% 100 AS draw,
                   1 + abs(hashtext('cloan:' || c)) %% %(loans)s AS primary_loan_id,
                   CASE WHEN abs(hashtext('csecond:' || c)) %% 100 < 15
                        THEN 1 + abs(hashtext('cloan2:' || c)) %% %(loans)s END AS second_loan_id
            FROM generate_series(1, %(collateral)s) AS c
        ) drawn
    ) d
    JOIN bench_plan p ON p.loan_id = d.primary_loan_id
"""

_COLLATERAL = """
    INSERT INTO loans_collateral (
        id, kind, description, reference, owner_name, owner_borrower_id, lien_rank, ltv_limit,
        insurance_expires_on
    )
    SELECT c, kind, initcap(replace(kind, '_', ' ')) || ' item ' || c, 'BENCH-C' || c,
           CASE WHEN c %% 10 = 0 THEN 'Third-party owner ' || c
                ELSE 'Benchmark borrower ' || borrower_id END,
           CASE WHEN c %% 10 = 0 THEN NULL ELSE borrower_id END,
           CASE WHEN abs(hashtext('clien:' || c)) %% 10 = 0 THEN 2 ELSE 1 END,
           ltv_limit,
           CASE
               WHEN kind NOT IN ('commercial_real_estate', 'residential_real_estate',
                                 'equipment', 'vehicles', 'inventory') THEN NULL
               WHEN insurance_draw < 8 THEN %(as_of)s::date - (1 + day_draw %% 180)
               WHEN insurance_draw < 15 THEN %(as_of)s::date + (1 + day_draw %% 30)
               ELSE %(as_of)s::date + (31 + day_draw %% 335)
           END
    FROM bench_collateral
    ORDER BY c
"""

# Valuation k of n is (n - k) intervals before the latest. A stale item's latest
# valuation is 1 to 300 days past its interval, a fresh one's at least 14 days
# inside it. After a drop the earlier values are 1.3 to 1.8 times the latest.
_VALUATIONS = """
    INSERT INTO loans_collateralvaluation (collateral_id, valued_on, value, method, valuer)
    SELECT b.c,
           b.latest_on - (b.valuations - k) * b.interval_days,
           CASE WHEN k = b.valuations THEN b.latest_value
                WHEN b.value_drop
                    THEN ROUND(b.latest_value * 100
                               / (55 + abs(hashtext('cprior:' || b.c || ':' || k)) %% 23), 2)
                ELSE ROUND(b.latest_value
                           * (92 + abs(hashtext('cprior:' || b.c || ':' || k)) %% 17) / 100, 2)
           END,
           CASE WHEN b.kind IN ('deposits', 'receivables') THEN 'statement'
                WHEN b.kind = 'equity' THEN 'market price'
                ELSE 'appraisal' END,
           'Benchmark valuer ' || (1 + b.c %% 50)
    FROM (
        SELECT bench_collateral.*,
               %(as_of)s::date - CASE
                   WHEN stale THEN interval_days + 1 + day_draw %% 300
                   ELSE day_draw %% (interval_days - 14)
               END AS latest_on
        FROM bench_collateral
    ) b
    CROSS JOIN LATERAL generate_series(1, b.valuations) AS k
    ORDER BY b.c, k
"""

_PLEDGES = """
    INSERT INTO loans_collateralpledge (collateral_id, loan_id, share)
    SELECT c, primary_loan_id,
           CASE WHEN second_loan_id IS NULL THEN 1 WHEN c %% 2 = 0 THEN 0.6 ELSE 0.5 END
    FROM bench_collateral
    UNION ALL
    SELECT c, second_loan_id, CASE WHEN c %% 2 = 0 THEN 0.4 ELSE 0.3 END
    FROM bench_collateral
    WHERE second_loan_id IS NOT NULL
    ORDER BY 1, 2
"""

_SIGNALS = """
    INSERT INTO monitoring_externalsignal (
        borrower_id, kind, description, observed_on, ended_on, recorded_by_id, recorded_at
    )
    SELECT x.borrower_id, x.kind, 'Benchmark signal ' || x.s, x.observed_on,
           CASE WHEN abs(hashtext('ended:' || x.s)) %% 10 < 3
                THEN x.observed_on
                     + abs(hashtext('endday:' || x.s)) %% (%(as_of)s::date - x.observed_on + 1)
           END,
           %(recorded_by)s, now()
    FROM (
        SELECT s,
               1 + abs(hashtext('signal:' || s)) %% %(borrowers)s AS borrower_id,
               (ARRAY['litigation', 'enforcement', 'tax_arrears', 'key_person_leaving',
                      'negative_news', 'production_halt'])[1 + abs(hashtext('skind:' || s)) %% 6]
                   AS kind,
               %(as_of)s::date - abs(hashtext('sday:' || s)) %% 365 AS observed_on
        FROM generate_series(1, %(signals)s) AS s
    ) x
"""

# Tables whose identity sequences must move past the explicit ids inserted.
_ID_TABLES = (
    "loans_branch",
    "loans_borrower",
    "loans_loan",
    "loans_instalment",
    "loans_repayment",
    "loans_repaymentallocation",
    "loans_guarantor",
    "loans_collateral",
    "monitoring_watchedindustry",
)

BOOK_TABLES = (
    *_ID_TABLES,
    "loans_writeoff",
    "loans_guarantee",
    "loans_collateralvaluation",
    "loans_collateralpledge",
    "monitoring_externalsignal",
)

# Sizes of the collateral, guarantees and signals for 1,000,000 loans; smaller
# or larger books get them in proportion.
PER_MILLION_LOANS = {
    "collateral": 300_000,
    "outside_guarantors": 158_000,
    "scheme_guarantees": 2_000,
    "borrower_guarantees": 100_000,
    "circles": 1_000,
    "chains": 2_000,
    "signals": 5_000,
}
SCHEMES = 3
RECORDED_BY = "benchmark-recorder"


# Raw SQL that gives loans officers leaves the officer copy on their active
# warnings out of date until the next run. This update brings it up to date.
COPY_OFFICERS_TO_WARNINGS = """
    UPDATE monitoring_earlywarning w SET officer_id = l.officer_id
    FROM loans_loan l
    WHERE l.id = w.loan_id AND w.status IN ('open', 'acknowledged', 'in_progress')
      AND w.officer_id IS DISTINCT FROM l.officer_id
"""


def book_tables() -> list[str]:
    """Return every table of the loans and monitoring apps, history tables included."""
    return [
        model._meta.db_table
        for label in ("loans", "monitoring")
        for model in apps.get_app_config(label).get_models()
        if model._meta.managed
    ]


def loan_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM loans_loan")
        return cursor.fetchone()[0]


def network_sizes(loans: int) -> dict[str, int]:
    """Return the counts of PER_MILLION_LOANS for `loans` loans, and the network's layout.

    The places of `bench_anchor` (borrowers with an open loan, in random
    order) are laid out as: circle members, chain members, star centres,
    star leaves. `places_needed` is the last place used.
    """
    scale = loans / 1_000_000
    sizes = {name: max(round(count * scale), 1) for name, count in PER_MILLION_LOANS.items()}
    circle_places = sum(2 + c % 4 for c in range(sizes["circles"]))
    chain_places = sum(3 + h % 4 for h in range(sizes["chains"]))
    chain_edges = chain_places - sizes["chains"]
    # Stars take the borrower guarantees that circles and chains leave, 2.5 on average.
    star_edges = max(sizes["borrower_guarantees"] - circle_places - chain_edges, 1)
    stars = max(round(star_edges / 2.5), 1)
    leaves = sum(1 + t % 4 for t in range(stars))
    sizes.update(
        chain_base=circle_places,
        star_base=circle_places + chain_places,
        stars=stars,
        places_needed=circle_places + chain_places + stars + leaves,
    )
    return sizes


def generate(loans: int, as_of: date) -> dict[str, float]:
    """Replace the loan book with `loans` synthetic loans; return seconds per step.

    One transaction: the secondary indexes, unique and foreign-key constraints
    of the book tables are dropped before the inserts and built again after
    them (which also checks every foreign key), so an interrupted generation
    leaves the schema as it was.
    """
    recorded_by, _created = get_user_model().objects.get_or_create(
        username=RECORDED_BY, defaults={"first_name": "Benchmark", "last_name": "Recorder"}
    )
    params = {
        "loans": loans,
        "borrowers": max(loans // 2, 1),
        "branches": BRANCHES,
        "as_of": as_of,
        "max_age_days": MAX_AGE_DAYS,
        "periods": INSTALMENTS_PER_LOAN,
        "industry_codes": list(INDUSTRY_CODES),
        "industry_count": len(INDUSTRY_CODES),
        "schemes": SCHEMES,
        "recorded_by": recorded_by.pk,
        **network_sizes(loans),
    }
    steps = {
        "plan": _PLAN,
        "branches": _BRANCHES,
        "borrowers": _BORROWERS,
        "loans": _LOANS,
        "instalments": _INSTALMENTS,
        "repayments": _REPAYMENTS,
        "allocations": _ALLOCATIONS,
        "write_offs": _WRITE_OFFS,
        "watched_industries": _WATCHED_INDUSTRIES,
        "guarantee_network_layout": _ANCHORS + ";" + _NETWORK_EDGES,
        "guarantors": _GUARANTORS,
        "outside_guarantees": _OUTSIDE_GUARANTEES,
        "borrower_guarantees": _BORROWER_GUARANTEES,
        "net_worth": _NET_WORTH,
        "collateral": _COLLATERAL_PLAN + ";" + _COLLATERAL,
        "valuations": _VALUATIONS,
        "pledges": _PLEDGES,
        "external_signals": _SIGNALS,
    }
    seconds: dict[str, float] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"TRUNCATE {', '.join(book_tables())} RESTART IDENTITY CASCADE")
        restore = _drop_secondary_structures(cursor)
        for name, statement in steps.items():
            started = time.perf_counter()
            cursor.execute(statement, params)
            seconds[name] = time.perf_counter() - started
        cursor.execute("SELECT COUNT(*) FROM bench_anchor")
        if cursor.fetchone()[0] < params["places_needed"]:
            # NOTE: only books of a few hundred loans have too few borrowers
            # with an open loan; the structures then lose their last members.
            logger.warning(
                "Too few borrowers with an open loan for the guarantee network: %d needed.",
                params["places_needed"],
            )
        cursor.execute(
            "DROP TABLE bench_plan, bench_anchor, bench_edge, bench_borrower_guarantor, "
            "bench_collateral"
        )
        started = time.perf_counter()
        for statement in restore:
            cursor.execute(statement)
        seconds["indexes_and_constraints"] = time.perf_counter() - started
        for table in _ID_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(f"VACUUM ANALYZE {', '.join(BOOK_TABLES)}")
        seconds["vacuum_analyze"] = time.perf_counter() - started
    return seconds


def _drop_secondary_structures(cursor) -> list[str]:
    """Drop the book tables' indexes and constraints other than primary keys.

    Returns the statements that create them again, unique constraints and
    indexes before the foreign keys.
    """
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, c.contype,
               pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.conrelid = ANY(%(tables)s::regclass[]) AND c.contype IN ('u', 'f')
        ORDER BY c.contype DESC
        """,
        {"tables": list(BOOK_TABLES)},
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%(tables)s::regclass[]) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        {"tables": list(BOOK_TABLES)},
    )
    indexes = cursor.fetchall()
    for table, name, _kind, _definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    unique = [row for row in constraints if row[2] == "u"]
    foreign = [row for row in constraints if row[2] == "f"]
    return [
        *(f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, _k, d in unique),
        *(definition for _name, definition in indexes),
        *(f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, _k, d in foreign),
    ]


def profile_counts() -> dict[str, int]:
    """Return loans per status, as a check that the mix came out as drawn."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, COUNT(*) FROM loans_loan GROUP BY status ORDER BY status")
        return dict(cursor.fetchall())


def collateral_and_guarantee_counts() -> dict[str, int]:
    """Return the rows of the collateral, guarantee and signal tables, as a check of the sizes."""
    tables = {
        "collateral": "loans_collateral",
        "valuations": "loans_collateralvaluation",
        "pledges": "loans_collateralpledge",
        "guarantors": "loans_guarantor",
        "borrower_guarantors": "loans_guarantor WHERE borrower_id IS NOT NULL",
        "guarantees": "loans_guarantee",
        "external_signals": "monitoring_externalsignal",
        "watched_industries": "monitoring_watchedindustry",
    }
    counts = {}
    with connection.cursor() as cursor:
        for name, source in tables.items():
            cursor.execute(f"SELECT COUNT(*) FROM {source}")
            counts[name] = cursor.fetchone()[0]
    return counts
