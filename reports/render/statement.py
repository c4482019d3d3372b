"""Per-member monthly statements: the figures, their texts in French and English, and HTML.

One ``Statement`` per member of a ``MonthlyReport``: volumes, its own 95th, its traffic in
the bin that set the aggregate's billed 95th, what it owes (its ``MemberBill.total_cents``:
its share of the invoice plus its share of the syndicate's fee), VAT and the total with
VAT, the rule in two plain sentences, the completeness of the data.

Amounts. The amount before VAT (HT) is the member's total from the bill, so the statements'
HT amounts sum exactly to invoice + fee. VAT is computed per statement, on its HT amount,
rounded half up to the cent; the TTC amount is HT + VAT. The TTC amounts of all statements
may therefore differ from (invoice + fee) * (1 + rate) by at most half a cent per statement.

French formatting: ``1 234,56 €`` with a narrow no-break space (U+202F) between groups of
thousands and a no-break space (U+00A0) before the euro sign, as French typography does
(and CLDR's fr locale); English: ``€1,234.56``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from accounting.contract import round_half_up
from reports.monthly import MonthlyReport
from reports.series import MonthSeries

NNBSP = "\u202f"  # narrow no-break space: French thousands separator, before % and :
NBSP = "\u00a0"  # no-break space: before €
LANGS = ("fr", "en")
DEFAULT_VAT = Fraction(20)

MONTHS = {
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


# ---- formatting


def _group(whole: int, separator: str) -> str:
    text = str(whole)
    groups = []
    while len(text) > 3:
        groups.append(text[-3:])
        text = text[:-3]
    groups.append(text)
    return separator.join(reversed(groups))


def format_eur(cents: int, lang: str = "fr") -> str:
    """``1 234,56 €`` (fr, U+202F between thousands, U+00A0 before €) or ``€1,234.56`` (en)."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    if lang == "fr":
        return f"{sign}{_group(whole, NNBSP)},{rest:02d}{NBSP}€"
    return f"{sign}€{_group(whole, ',')}.{rest:02d}"


def format_number(value: float, decimals: int, lang: str) -> str:
    text = f"{abs(value):.{decimals}f}"
    whole, _, frac = text.partition(".")
    grouped = _group(int(whole), NNBSP if lang == "fr" else ",")
    sign = "-" if value < 0 and float(text) != 0 else ""
    if not frac:
        return sign + grouped
    return f"{sign}{grouped}{',' if lang == 'fr' else '.'}{frac}"


def format_percent(value: Fraction | float | None, lang: str, decimals: int = 1) -> str:
    if value is None:
        return "-"
    number = format_number(float(value) * 100, decimals, lang)
    return f"{number}{NNBSP}%" if lang == "fr" else f"{number}%"


def format_bytes(n: int, lang: str) -> str:
    units = (
        ("o", "ko", "Mo", "Go", "To", "Po") if lang == "fr" else ("B", "kB", "MB", "GB", "TB", "PB")
    )
    value = float(n)
    for k, unit in enumerate(units):
        if abs(value) < 1000 or k == len(units) - 1:
            decimals = 0 if k == 0 else 2
            return f"{format_number(value, decimals, lang)}{NBSP}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_rate(bps: float, lang: str) -> str:
    for unit, scale in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{format_number(bps / scale, 3, lang)}{NBSP}{unit}"
    return f"{format_number(bps, 0, lang)}{NBSP}b/s"


def format_date(moment: datetime, lang: str) -> str:
    month = MONTHS[lang][moment.month - 1]
    day = "1er" if lang == "fr" and moment.day == 1 else str(moment.day)
    return f"{day} {month} {moment.year}"


def month_title(report: MonthlyReport, lang: str) -> str:
    start = report.month.start_local
    name = MONTHS[lang][start.month - 1]
    return f"{name} {start.year}"


# ---- the statement's figures


@dataclass(frozen=True, slots=True)
class Peak:
    """The member's traffic in the bin that set the aggregate's billed 95th."""

    start_utc: datetime
    direction: str  # 'in', 'out' or 'in+out'
    member_bytes: int
    aggregate_bytes: int

    def share(self) -> Fraction | None:
        if self.aggregate_bytes <= 0:
            return None
        return Fraction(self.member_bytes, self.aggregate_bytes)


@dataclass(frozen=True, slots=True)
class Statement:
    member_id: str
    name: str
    month: str  # "2026-11"
    lang: str
    timezone: str
    period_start: datetime  # local
    period_last_day: datetime  # local, the month's last day
    bin_seconds: int
    percentile: int
    bytes_in: int
    bytes_out: int
    own_in_bps: Fraction
    own_out_bps: Fraction
    peak: Peak | None
    fixed_cents: int
    usage_cents: int
    fee_cents: int
    ht_cents: int
    vat_percent: Fraction
    vat_cents: int
    ttc_cents: int
    rule: str  # the rule that produced the member's usage share (after any fallback)
    rule_sentences: tuple[str, str]
    completeness: tuple[str, ...]
    reproducibility: str
    in_configuration: bool

    @property
    def file_stem(self) -> str:
        return f"{self.month}-{self.member_id}"


def vat_of(ht_cents: int, vat_percent: Fraction) -> int:
    """VAT on one statement's amount, rounded half up to the cent."""
    return round_half_up(Fraction(ht_cents) * vat_percent / 100)


def build_statements(
    report: MonthlyReport,
    series: MonthSeries,
    *,
    lang: str = "fr",
    vat_percent: Fraction | int | str = DEFAULT_VAT,
) -> list[Statement]:
    """One statement per member of the report, in the report's order."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}")
    vat = Fraction(vat_percent)
    if vat < 0:
        raise ValueError("the VAT rate must be >= 0")
    bill = report.bill
    month = report.month
    direction = bill.billed.direction
    billed_bin = bill.billed_bins["billed"]
    column = series.column_of(billed_bin)
    completeness = completeness_sentences(report, lang)
    last_day = month.end_local - timedelta(days=1)
    statements = []
    for k, line in enumerate(report.members):
        row = series.row(line.id)
        peak = None
        if billed_bin is not None:
            member_bytes = 0 if column is None else int(series.members(direction)[row, column])
            aggregate = 0 if column is None else int(series.aggregate(direction)[column])
            peak = Peak(report.bin_time(billed_bin), direction, member_bytes, aggregate)
        ht = line.bill.total_cents
        tax = vat_of(ht, vat)
        statements.append(
            Statement(
                member_id=line.id,
                name=line.name,
                month=month.label,
                lang=lang,
                timezone=month.timezone,
                period_start=month.start_local,
                period_last_day=last_day,
                bin_seconds=month.bin_seconds,
                percentile=report.percentile,
                bytes_in=line.bytes_in,
                bytes_out=line.bytes_out,
                own_in_bps=report.bps(line.p95_in_bytes),
                own_out_bps=report.bps(line.p95_out_bytes),
                peak=peak,
                fixed_cents=line.bill.fixed_cents,
                usage_cents=line.bill.usage_cents,
                fee_cents=line.bill.fee_cents,
                ht_cents=ht,
                vat_percent=vat,
                vat_cents=tax,
                ttc_cents=ht + tax,
                rule=bill.allocation.used,
                rule_sentences=rule_sentences(report, k, lang),
                completeness=completeness,
                reproducibility=bill.reproducibility(),
                in_configuration=line.in_configuration,
            )
        )
    return statements


DIRECTION_WORDS = {
    "fr": {"in": "entrant", "out": "sortant", "in+out": "entrant + sortant"},
    "en": {"in": "inbound", "out": "outbound", "in+out": "inbound + outbound"},
}


def rule_sentences(report: MonthlyReport, k: int, lang: str) -> tuple[str, str]:
    """The rule that set member ``k``'s usage share, in two plain sentences with its figures."""
    bill = report.bill
    allocation = bill.allocation
    used = allocation.used
    weights = [Fraction(w) for w in allocation.weights]
    total = sum(weights, Fraction(0))
    share = None if total == 0 else weights[k] / total
    pct = format_percent(share, lang)
    usage = format_eur(bill.usage_cents, lang)
    amount = format_eur(report.members[k].bill.usage_cents, lang)
    direction = DIRECTION_WORDS[lang][bill.billed.direction]
    p = report.percentile
    minutes = report.bin_seconds // 60
    billed_bin = bill.billed_bins["billed"]
    when = "-" if billed_bin is None else _local_time(report, billed_bin, lang)
    n = len(report.members)
    band = bill.policy.band_bins
    fr = lang == "fr"
    if used == "volume":
        first = (
            f"La part de la facture liée à l'usage ({usage}) est répartie entre les membres au "
            f"prorata du volume de données que chacun a échangé dans le sens facturé "
            f"({direction}) pendant le mois."
            if fr
            else f"The usage part of the invoice ({usage}) is shared among the members in "
            f"proportion to the data each one exchanged in the billed direction ({direction}) "
            "during the month."
        )
        second = (
            f"Votre volume représente {pct} du total, d'où {amount}."
            if fr
            else f"Your volume is {pct} of the total, hence {amount}."
        )
    elif used == "p95-own":
        rate = format_rate(float(report.bps(report.members[k].bill.standalone_bytes)), lang)
        first = (
            f"La part de la facture liée à l'usage ({usage}) est répartie au prorata du "
            f"{p}e centile propre de chaque membre, le débit qu'il ne dépasse que "
            f"{100 - p}{NNBSP}% du temps."
            if fr
            else f"The usage part of the invoice ({usage}) is shared in proportion to each "
            f"member's own {p}th percentile, the rate it exceeds only {100 - p}% of the time."
        )
        second = (
            f"Votre {p}e centile ({rate}) représente {pct} de la somme de ceux des membres, "
            f"d'où {amount}."
            if fr
            else f"Your {p}th percentile ({rate}) is {pct} of the members' sum, hence {amount}."
        )
    elif used == "p95-bin":
        if band:
            where_fr = (
                f"pendant les intervalles de {minutes} minutes classés autour de celui qui fixe "
                f"le {p}e centile facturé par l'opérateur (± {band})"
            )
            where_en = (
                f"in the {minutes}-minute intervals ranked around the one that sets the "
                f"operator's billed {p}th percentile (± {band})"
            )
        else:
            where_fr = (
                f"pendant l'intervalle de {minutes} minutes qui fixe le {p}e centile facturé "
                f"par l'opérateur ({when})"
            )
            where_en = (
                f"in the {minutes}-minute interval that sets the operator's billed {p}th "
                f"percentile ({when})"
            )
        first = (
            f"La part de la facture liée à l'usage ({usage}) est répartie selon le trafic de "
            f"chaque membre {where_fr}."
            if fr
            else f"The usage part of the invoice ({usage}) is shared according to each "
            f"member's traffic {where_en}."
        )
        second = (
            f"Votre trafic y représente {pct} du total, d'où {amount}."
            if fr
            else f"Your traffic there is {pct} of the total, hence {amount}."
        )
    elif used == "shapley":
        first = (
            f"La part de la facture liée à l'usage ({usage}) est répartie selon la valeur de "
            f"Shapley : la moyenne, sur tous les ordres d'arrivée possibles des membres, de ce "
            f"que l'arrivée de chacun ajoute au {p}e centile facturé."
            if fr
            else f"The usage part of the invoice ({usage}) is shared by Shapley value: the "
            f"average, over every order in which the members could join, of what each one's "
            f"arrival adds to the billed {p}th percentile."
        )
        second = (
            f"Votre contribution moyenne représente {pct} du total, d'où {amount}."
            if fr
            else f"Your average contribution is {pct} of the total, hence {amount}."
        )
    else:  # equal split (nothing to weigh by)
        first = (
            f"La part de la facture liée à l'usage ({usage}) est répartie à parts égales "
            f"entre les {n} membres, faute de trafic permettant une autre répartition."
            if fr
            else f"The usage part of the invoice ({usage}) is split equally among the {n} "
            "members, as no traffic allows another split."
        )
        second = f"Votre part est donc {amount}." if fr else f"Your part is therefore {amount}."
    return first.replace(" :", f"{NNBSP}:") if fr else first, second


def _local_time(report: MonthlyReport, bin_number: int, lang: str) -> str:
    start = report.bin_time(bin_number).astimezone(ZoneInfo(report.month.timezone))
    end = start + timedelta(seconds=report.bin_seconds)
    day = format_date(start, lang)
    joiner = ", " if lang == "en" else " "
    return f"{day}{joiner}{start:%H:%M}–{end:%H:%M}"


def completeness_sentences(report: MonthlyReport, lang: str) -> tuple[str, ...]:
    """How complete the month's data is, in words."""
    fr = lang == "fr"
    minutes = report.bin_seconds // 60
    m = report.month
    sentences = [
        f"{format_number(report.bins_with_data, 0, lang)} des "
        f"{format_number(m.bin_count, 0, lang)} intervalles de {minutes} minutes du mois "
        "contiennent des mesures."
        if fr
        else f"{format_number(report.bins_with_data, 0, lang)} of the month's "
        f"{format_number(m.bin_count, 0, lang)} {minutes}-minute intervals hold data."
    ]
    if report.missing_bins:
        sentences.append(
            "Les intervalles sans mesure sont exclus du calcul du centile."
            if fr and report.bill.semantics.missing == "exclude"
            else "Les intervalles sans mesure comptent comme un trafic nul."
            if fr
            else "Intervals without data are left out of the percentile."
            if report.bill.semantics.missing == "exclude"
            else "Intervals without data count as zero traffic."
        )
    received = sum(e.sequence_received for e in report.exporters)
    lost = sum(max(e.sequence_lost, 0) for e in report.exporters)
    routers = len(report.exporters)
    if routers:
        share = format_percent(
            Fraction(received, received + lost) if received + lost else None, lang, 3
        )
        sentences.append(
            f"Exports de {routers} routeur(s) : {share} reçus selon leurs numéros de séquence "
            f"({format_number(lost, 0, lang)} perdus).".replace(" :", f"{NNBSP}:")
            if fr
            else f"Exports of {routers} router(s): {share} received according to their "
            f"sequence numbers ({format_number(lost, 0, lang)} lost)."
        )
    unknown = unknown_sampling(report)
    if unknown:
        sentences.append(
            f"{format_number(unknown, 0, lang)} flux sans taux d'échantillonnage connu, "
            "comptés tels quels."
            if fr
            else f"{format_number(unknown, 0, lang)} flows without a known sampling rate, "
            "counted as they are."
        )
    return tuple(sentences)


def unknown_sampling(report: MonthlyReport) -> int:
    """Flows whose sampling rate was unknown (counted 1:1), from the decoder's notes."""
    notes = report.counters.get("note", {})
    return sum(v for k, v in notes.items() if "sampling" in k and "unknown" in k)


# ---- texts shared by the HTML and PDF renderings

LABELS = {
    "fr": {
        "title": "Relevé mensuel de consommation internet",
        "member": "Membre",
        "id": "Identifiant",
        "period": "Période",
        "period_value": "du {start} au {end} ({tz})",
        "usage": "Consommation",
        "in": "Volume entrant (téléchargement)",
        "out": "Volume sortant (envoi)",
        "own_in": "Votre {p}e centile entrant",
        "own_out": "Votre {p}e centile sortant",
        "peak": "Votre trafic au pic facturé",
        "peak_value": "{rate} ({dir}), {pct} du trafic total ; {when}",
        "amounts": "Montant dû",
        "fixed": "Part fixe",
        "usage_part": "Part liée à l'usage",
        "fee": "Frais de gestion du syndicat",
        "ht": "Total HT",
        "vat": "TVA {rate}",
        "ttc": "Total TTC",
        "rule": "Comment ce montant est calculé",
        "chart": "Votre trafic pendant le mois",
        "completeness": "Complétude des données",
        "reproducibility": "Reproductibilité",
        "not_configured": "Ce membre n'est plus dans la configuration ; son trafic enregistré "
        "est facturé.",
        "vat_note": "TVA calculée sur le montant HT de ce relevé, arrondie au centime.",
    },
    "en": {
        "title": "Monthly internet usage statement",
        "member": "Member",
        "id": "Id",
        "period": "Period",
        "period_value": "{start} to {end} ({tz})",
        "usage": "Usage",
        "in": "Inbound volume (download)",
        "out": "Outbound volume (upload)",
        "own_in": "Your {p}th percentile in",
        "own_out": "Your {p}th percentile out",
        "peak": "Your traffic at the billed peak",
        "peak_value": "{rate} ({dir}), {pct} of all traffic; {when}",
        "amounts": "Amount due",
        "fixed": "Fixed part",
        "usage_part": "Usage part",
        "fee": "Syndicate's management fee",
        "ht": "Total excl. VAT",
        "vat": "VAT {rate}",
        "ttc": "Total incl. VAT",
        "rule": "How this amount is computed",
        "chart": "Your traffic during the month",
        "completeness": "Data completeness",
        "reproducibility": "Reproducibility",
        "not_configured": "This member is no longer in the configuration; its recorded "
        "traffic is billed.",
        "vat_note": "VAT computed on this statement's amount before VAT, rounded to the cent.",
    },
}


def heading(statement: Statement) -> str:
    """The statement's title line with its month."""
    months = MONTHS[statement.lang]
    name = months[statement.period_start.month - 1]
    return f"{LABELS[statement.lang]['title']} — {name} {statement.period_start.year}"


def usage_rows(s: Statement) -> list[tuple[str, str]]:
    t = LABELS[s.lang]
    lang = s.lang
    rows = [
        (t["in"], format_bytes(s.bytes_in, lang)),
        (t["out"], format_bytes(s.bytes_out, lang)),
        (t["own_in"].format(p=s.percentile), format_rate(float(s.own_in_bps), lang)),
        (t["own_out"].format(p=s.percentile), format_rate(float(s.own_out_bps), lang)),
    ]
    if s.peak is not None:
        rate = format_rate(s.peak.member_bytes * 8 / s.bin_seconds, lang)
        start = s.peak.start_utc.astimezone(ZoneInfo(s.timezone))
        end = start + timedelta(seconds=s.bin_seconds)
        when = f"{format_date(start, lang)} {start:%H:%M}–{end:%H:%M}"
        value = t["peak_value"].format(
            rate=rate,
            dir=DIRECTION_WORDS[lang][s.peak.direction],
            pct=format_percent(s.peak.share(), lang),
            when=when,
        )
        rows.append((t["peak"], value.replace(" ;", f"{NNBSP};") if lang == "fr" else value))
    return rows


def amount_rows(s: Statement) -> list[tuple[str, str, bool]]:
    """(label, amount, emphasised) lines of the amount due."""
    t = LABELS[s.lang]
    lang = s.lang
    rows: list[tuple[str, str, bool]] = []
    if s.fixed_cents:
        rows.append((t["fixed"], format_eur(s.fixed_cents, lang), False))
    rows.append((t["usage_part"], format_eur(s.usage_cents, lang), False))
    if s.fee_cents:
        rows.append((t["fee"], format_eur(s.fee_cents, lang), False))
    rate = format_number(float(s.vat_percent), 2, lang).rstrip("0").rstrip(",.")
    rate = f"{rate}{NNBSP}%" if lang == "fr" else f"{rate}%"
    rows += [
        (t["ht"], format_eur(s.ht_cents, lang), True),
        (t["vat"].format(rate=rate), format_eur(s.vat_cents, lang), False),
        (t["ttc"], format_eur(s.ttc_cents, lang), True),
    ]
    return rows


def period_text(s: Statement) -> str:
    t = LABELS[s.lang]
    return t["period_value"].format(
        start=format_date(s.period_start, s.lang),
        end=format_date(s.period_last_day, s.lang),
        tz=s.timezone,
    )


# ---- HTML

STATEMENT_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; margin: 2em auto;
       max-width: 52em; font-size: 11pt; line-height: 1.4; }
h1 { font-size: 1.35em; margin-bottom: 0.2em; }
h2 { font-size: 1.05em; border-bottom: 1px solid #ccc; margin-top: 1.4em; }
table { border-collapse: collapse; width: 100%; }
td { padding: 0.15em 0.4em; vertical-align: top; }
td.amount { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.strong td { font-weight: bold; border-top: 1px solid #999; }
.who { font-size: 1.15em; font-weight: bold; }
.small { font-size: 0.8em; color: #555; word-break: break-all; }
svg { max-width: 100%; height: auto; }
@media print { body { margin: 0; } }
"""


def render_statement_html(s: Statement, chart_svg: str = "") -> str:
    """A self-contained HTML page of one statement (every member string escaped)."""
    e = html.escape
    t = LABELS[s.lang]
    usage = "".join(
        f"<tr><td>{e(label)}</td><td class='amount'>{e(value)}</td></tr>"
        for label, value in usage_rows(s)
    )
    amounts = "".join(
        f"<tr class='{'strong' if strong else 'part'}'><td>{e(label)}</td>"
        f"<td class='amount'>{e(value)}</td></tr>"
        for label, value, strong in amount_rows(s)
    )
    colon = "&nbsp;:" if s.lang == "fr" else ":"
    warning = "" if s.in_configuration else f"<p><em>{e(t['not_configured'])}</em></p>"
    chart = f"<h2>{e(t['chart'])}</h2>\n<figure>{chart_svg}</figure>" if chart_svg else ""
    return f"""<!DOCTYPE html>
<html lang="{e(s.lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(heading(s))} — {e(s.name)}</title>
<style>{STATEMENT_CSS}</style>
</head>
<body>
<h1>{e(heading(s))}</h1>
<p class="who" id="member-name">{e(s.name)}</p>
<p>{e(t["id"])}{colon} <code id="member-id">{e(s.member_id)}</code><br>
{e(t["period"])}{colon} {e(period_text(s))}</p>
{warning}
<h2>{e(t["amounts"])}</h2>
<table id="amounts">{amounts}</table>
<p class="small">{e(t["vat_note"])}</p>
<h2>{e(t["rule"])}</h2>
<p id="rule">{e(s.rule_sentences[0])} {e(s.rule_sentences[1])}</p>
<h2>{e(t["usage"])}</h2>
<table id="usage">{usage}</table>
{chart}
<h2>{e(t["completeness"])}</h2>
<p>{" ".join(e(x) for x in s.completeness)}</p>
<p class="small">{e(t["reproducibility"])}: {e(s.reproducibility)}</p>
</body>
</html>
"""
