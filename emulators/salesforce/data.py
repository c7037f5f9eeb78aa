"""The emulated org's rows: deterministic generation from a seed, compact storage, mutations.

Rows are stored column-wise (one Python list per stored field): repeated values (picklists,
cities, the timestamp of a burst) are shared objects, so a row costs little more than eight
bytes per column. 200,000 Accounts with their 100,000 Subscriptions take about 135 MB and
generate in about a second. Storage formats: datetimes are epoch milliseconds (``int``),
dates ``YYYY-MM-DD`` strings, base64 fields their base64 text (the REST API writes a URL in
their place), everything else the JSON value itself.
"""

from __future__ import annotations

import base64
import calendar
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from functools import lru_cache
from operator import itemgetter
from typing import Any

from .credentials import USERNAME
from .errors import ApiError, not_found
from .schema import (
    ACCOUNT_TYPES,
    CASE_STATUSES,
    GEOCODE_ACCURACIES,
    INDUSTRIES,
    LATEST_VERSION,
    LEAD_STATUSES,
    NUMBER_TYPES,
    PLANS,
    PRIORITIES,
    RATINGS,
    SEGMENTS,
    STATUSES,
    TASK_STATUSES,
    TEXT_TYPES,
    WIDE_FIELDS,
    FieldDef,
    ObjectDef,
    find_object,
    is_polymorphic,
)

# Generated history lies in 2025 (in the past), so live mutations always sort after it.
HISTORY_START_MS = calendar.timegm((2025, 1, 1, 0, 0, 0)) * 1000
HISTORY_END_MS = calendar.timegm((2025, 12, 1, 0, 0, 0)) * 1000
DAY_MS = 86_400_000

INTEGRATION_USER_INDEX = 0

# -- value formats ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))


def format_datetime(ms: int) -> str:
    """Epoch milliseconds as Salesforce writes datetimes in JSON: ``2025-05-20T20:49:32.000+0000``."""
    seconds, millis = divmod(ms, 1000)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+0000"


def parse_datetime(value: Any) -> int:
    """A datetime given by a client (ISO-8601 text or ``datetime``) as epoch milliseconds."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return round(moment.timestamp() * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
            text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00
        try:
            return parse_datetime(datetime.fromisoformat(text))
        except ValueError:
            pass
    raise ValueError(f"not a datetime: {value!r}")


def parse_date(value: Any) -> str:
    """A date given by a client (``YYYY-MM-DD`` or ``date``) in storage form."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r}")


def now_ms() -> int:
    return int(time.time() * 1000)


# -- 18-character Salesforce ids ----------------------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECK = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_LO = [a + b for a in _B62 for b in _B62]  # the last two characters of the 15, in serial order


def _upper_bits(chunk: str) -> int:
    return sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")


_LO_BITS = [_upper_bits(lo) << 3 for lo in _LO]


def _b62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "".join(reversed(chars))


def to_18(id15: str) -> str:
    """Append the case-safe checksum that turns a 15-character id into the 18-character form."""
    return id15 + "".join(_CHECK[_upper_bits(id15[k : k + 5])] for k in (0, 5, 10))


def make_ids(prefix: str, start: int, count: int) -> list[str]:
    """Ids ``prefix + "5g0" + base62(serial)`` with checksum, for serials ``start..start+count``.

    The last two characters and their checksum bits come from tables, so a 200,000-row object
    gets its ids in well under a second.
    """
    out: list[str] = []
    serial, end = start, start + count
    while serial < end:
        hi = serial // 3844
        hi7 = _b62(hi, 7)
        head = f"{prefix}5g0{hi7}"
        checks = _CHECK[_upper_bits(head[:5])] + _CHECK[_upper_bits(head[5:10])]
        high_bits = _upper_bits(hi7[4:])
        stop = min(end, (hi + 1) * 3844)
        base = hi * 3844
        out.extend(
            f"{head}{_LO[s - base]}{checks}{_CHECK[high_bits | _LO_BITS[s - base]]}"
            for s in range(serial, stop)
        )
        serial = stop
    return out


def valid_id(text: str) -> bool:
    return len(text) in (15, 18) and all(c in _B62 for c in text)


# -- deterministic value pools ------------------------------------------------------------------

_NAME_HEADS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Wonka",
    "Cyberdyne", "Soylent", "Tyrell", "Aperture", "Black Mesa", "Oscorp", "Nakatomi", "Monarch",
    "Pied Piper", "Dunder Mifflin", "Müller & Söhne", "Société Générale d'Électricité",
    "Café Crème", "Ørsted", "Zoë's", "Ñandú", "Łódź", "Αθηνά", "Москва", "東京", "北京", "서울",
    "🚀 Rocket", "O'Brien", 'The "Quoted"', "Back\\slash", "Ünïcödé", "Kraków", "São Paulo",
)  # fmt: skip
_NAME_CORES = (
    "Holdings", "Software", "Analytics", "Logistics", "Systems", "Labs", "Industries",
    "Partners", "Foods", "Energy", "Health", "Robotics", "Media", "Consulting", "Capital",
    "Data", "Bank", "Telecom", "Motors", "Pharma", "データ", "科技", "Bäckerei", "Ingeniería",
    "Services",
)  # fmt: skip
_NAME_TAILS = (
    "Inc.", "LLC", "Ltd", "GmbH", "S.A.", "SARL", "K.K.", "株式会社", "有限公司", "AG",
    "Pty Ltd", "", "& Co.", "plc", "BV",
)  # fmt: skip

# (city, state, country, postal code prefix, latitude, longitude)
_CITIES = (
    ("San Francisco", "CA", "United States", "941", 37.7749, -122.4194),
    ("New York", "NY", "United States", "100", 40.7128, -74.006),
    ("Austin", "TX", "United States", "787", 30.2672, -97.7431),
    ("Chicago", "IL", "United States", "606", 41.8781, -87.6298),
    ("Seattle", "WA", "United States", "981", 47.6062, -122.3321),
    ("Boston", "MA", "United States", "021", 42.3601, -71.0589),
    ("Toronto", "ON", "Canada", "M5V", 43.6532, -79.3832),
    ("Montréal", "QC", "Canada", "H2X", 45.5019, -73.5674),
    ("México", "CDMX", "Mexico", "060", 19.4326, -99.1332),
    ("São Paulo", "SP", "Brazil", "010", -23.5505, -46.6333),
    ("London", None, "United Kingdom", "EC1", 51.5072, -0.1276),
    ("Dublin", None, "Ireland", "D02", 53.3498, -6.2603),
    ("Paris", None, "France", "750", 48.8566, 2.3522),
    ("München", "BY", "Germany", "803", 48.1351, 11.582),
    ("Zürich", "ZH", "Switzerland", "800", 47.3769, 8.5417),
    ("Kraków", None, "Poland", "31-", 50.0647, 19.945),
    ("Stockholm", None, "Sweden", "111", 59.3293, 18.0686),
    ("Tokyo", "東京都", "Japan", "100", 35.6762, 139.6503),
    ("Seoul", None, "South Korea", "045", 37.5665, 126.978),
    ("北京", "北京市", "China", "100", 39.9042, 116.4074),
    ("Singapore", None, "Singapore", "018", 1.3521, 103.8198),
    ("Sydney", "NSW", "Australia", "200", -33.8688, 151.2093),
    ("Bengaluru", "KA", "India", "560", 12.9716, 77.5946),
    ("Cape Town", "WC", "South Africa", "800", -33.9249, 18.4241),
)
_STREETS = (
    "Market Street", "Main St", "Broadway", "Rue de Rivoli", "Bahnhofstrasse", "Calle Mayor",
    "Avenida Paulista", "Königsallee", "Oxford Street", "Queen St W", "Ulica Floriańska",
    "銀座通り", "Nanjing Road", "Orchard Road", "George Street", "MG Road",
)  # fmt: skip

_SENTENCES = (
    "Long-standing customer with a strong renewal history.",
    "Évaluation en cours ; le décideur est le directeur financier.",
    'Prefers "quarterly" business reviews and asks for C:\\exports\\weekly paths.',
    "Kunde seit 2019, Ansprechpartnerin: Frau Müller.",
    "東京オフィスは2024年に移転しました。",
    "Expansion planned into APAC 🚀 next fiscal year.",
    "Contact via the partner portal only; do not cold call.",
    "Multi-line note:\n- onboarding done\n- training pending",
    "Tabs\tand 'single quotes' appear in imported notes.",
    "Cliente estratégico en Latinoamérica (región Sur).",
)


def _descriptions(rng: random.Random, n: int) -> list[str | None]:
    """Descriptions.

    20% null, mostly a sentence or three, 3% longer than Amplitude's 1024-character limit (up to 6,000), and
    one row in 2,000 at the field's 32,000 maximum.
    """
    short = [" ".join(rng.choice(_SENTENCES) for _ in range(1 + k % 3)) for k in range(60)]
    long = [" ".join(rng.choice(_SENTENCES) for _ in range(24 + k * 10)) for k in range(10)]
    longest = "x" * 32000
    r = rng.random
    out: list[str | None] = []
    for _ in range(n):
        u = r()
        if u < 0.2:
            out.append(None)
        elif u < 0.2005:
            out.append(longest)
        elif u < 0.23:
            out.append(long[int(u * 1e6) % 10])
        else:
            out.append(short[int(u * 1e6) % 60])
    return out


def _slug(text: str) -> str:
    """Lowercase ASCII letters and digits of ``text``, accents stripped ("Zoë" -> "zoe")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_text.lower() if c.isalnum()) or "intl"


def _account_names() -> tuple[list[str], list[str]]:
    names, sites = [], []
    for h in _NAME_HEADS:
        for c in _NAME_CORES:
            for t in _NAME_TAILS:
                names.append(f"{h} {c} {t}".strip())
                sites.append(f"https://www.{_slug(h)}-{_slug(c)}.example")
    names.append("L" + "o" * 253 + "ng")  # 255 characters, the field's maximum
    sites.append("https://www.long.example")
    return names, sites


_USERS = (
    ("Integration", "User", "Integration", "IT"),
    ("José", "Álvarez", "Account Executive", "Sales"),
    ("Zoë", "Müller", "Sales Director", "Sales"),
    ("太郎", "山田", "Regional Manager", "Sales APAC"),
    ("Siobhán", "O'Connor", "Customer Success Manager", "Customer Success"),
    ("Anna", "Kowalska", None, "Sales EMEA"),
    ("Björn", "Åström", "Solutions Engineer", None),
    ("Priya", "Raghunathan", "Account Executive", "Sales"),
    ("Chen", "Wei", "Account Executive", "Sales APAC"),
    ("Fatima", "Al-Sayed", "VP Sales", "Sales"),
    (None, "Cher", "Partner Manager", "Partnerships"),
    ("Luis", "García Márquez", "Account Executive", "Sales LATAM"),
    ("Olga", "Иванова", "Account Executive", "Sales EMEA"),
    ("Minh", "Nguyễn", "Sales Operations", "Operations"),
    ("Grace", "Hopper", "Customer Success Manager", "Customer Success"),
    ("Ada", "Lovelace", None, None),
    ("Kwame", "Mensah", "Account Executive", "Sales"),
    ("Emma", "Dubois", "Account Manager", "Sales EMEA"),
    ("Noah", 'Smith "Smitty"', "Account Executive", "Sales"),
    ("Leilani", "Kahale", "Account Executive", "Sales"),
)
_INACTIVE_USERS = frozenset({15, 18})

# Documents: (Name, DeveloperName, Type, ContentType, body, Description). Four of those with a
# body are picked per seed; the external link (no body) is always there.
_DOCUMENTS = (
    ("Company Logo", "Company_Logo", "png", "image/png",
     b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00",
     "Logo used in email templates."),
    ("Price List 2025", "Price_List_2025", "csv", "text/csv",
     b"Plan,MRR\nStarter,49\nGrowth,199\nBusiness,499\n", "List prices, USD."),
    ("Onboarding Guide", "Onboarding_Guide", "pdf", "application/pdf",
     b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", None),
    ("Lettre de bienvenue", "Lettre_de_bienvenue", "txt", "text/plain",
     "Bienvenue ! L'équipe 🚀 vous remercie.\n".encode(), "Modèle en français."),
    ("Letterhead", "Letterhead", "html", "text/html",
     b"<html><body><h1>Acme</h1></body></html>", "Quote letterhead."),
    ("東京オフィス地図", "Tokyo_Office_Map", "gif", "image/gif",
     b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;", None),
)  # fmt: skip
_DOCUMENT_LINK = (
    "Partner Portal", "Partner_Portal", None, None, None, "External link; the document has no body."
)  # fmt: skip

# Groups: (Name, DeveloperName, Type, Email). Queues own some Cases; the public group owns nothing.
_GROUPS = (
    ("Support Queue", "Support_Queue", "Queue", "support@emulator.example"),
    ("Tier 2 Escalations", "Tier_2_Escalations", "Queue", None),
    ("Équipe Support FR", "Equipe_Support_FR", "Queue", "support.fr@emulator.example"),
    ("All Sales", "All_Sales", "Regular", None),
)
_CONTACTS = (
    ("Marie", "Curie"), ("Jürgen", "Schmidt"), ("Aiko", "Tanaka"), (None, "Madonna"),
    ("Carlos", "Peña"), ("Ingrid", "Bergström"), ("Ravi", "Shankar"), ("Sean", "O'Neill"),
    ("Lena", "Petrova"), ("Tomás", "Ruiz"), ("Hana", "Kim"), ("Olu", "Adebayo"),
)  # fmt: skip
_LEADS = (
    ("Pat", "Quinn", "Quinn Brewing"), ("Mei", "Lin", "Lin Textiles 有限公司"),
    ("Jonas", "Weber", "Weber Maschinenbau GmbH"), (None, "Okafor", "Okafor Logistics"),
    ("Sofia", "Rossi", "Rossi & Figli"),
)  # fmt: skip
_TASK_SUBJECTS = ("Call", "Send Letter", "Send Quote", "Email", "Follow up", "Renewal call", "Other")

_DATES_2025_2027 = [
    date.fromordinal(d).isoformat()
    for d in range(date(2025, 1, 1).toordinal(), date(2027, 12, 31).toordinal() + 1)
]


def _full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(p for p in (first, last) if p) or None


def _person_columns(people: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """FirstName, LastName and the Name Salesforce derives from them, for (first, last, …) rows."""
    return {
        "FirstName": [p[0] for p in people],
        "LastName": [p[1] for p in people],
        "Name": [_full_name(p[0], p[1]) for p in people],
    }


def _pick(rng: random.Random, pool: Sequence[Any], n: int, null: float = 0.0) -> list[Any]:
    """``n`` values drawn from ``pool`` (shared objects), each null with probability ``null``."""
    r, k = rng.random, len(pool)
    if not null:
        return [pool[int(r() * k)] for _ in range(n)]
    scale = k / (1.0 - null)
    return [None if (u := r()) < null else pool[int((u - null) * scale)] for _ in range(n)]


def _history(rng: random.Random, n: int) -> tuple[list[int], list[int], list[int]]:
    """CreatedDate, LastModifiedDate and SystemModstamp columns (epoch ms, second precision).

    Rows change in bursts that share one SystemModstamp (1 to 50 rows, like a mass update),
    plus one burst of at least 1000 rows when there are enough rows: incremental readers must
    cope with many rows on the bookmark's timestamp. Rows are assigned to bursts at random.
    """
    big = max(1000, n // 50) if n >= 2000 else 0
    sizes: list[int] = []
    remaining = n - big
    while remaining > 0:
        size = min(remaining, 1 + int(rng.random() ** 3 * 50))
        sizes.append(size)
        remaining -= size
    if big:
        sizes.insert(rng.randrange(len(sizes) + 1), big)
    span = (HISTORY_END_MS - HISTORY_START_MS) // 1000
    seconds = sorted(rng.sample(range(span), len(sizes)))
    order = list(range(n))
    rng.shuffle(order)
    modstamp = [0] * n
    pos = 0
    for size, sec in zip(sizes, seconds, strict=True):
        stamp = HISTORY_START_MS + sec * 1000  # one int object shared by the whole burst
        for row in order[pos : pos + size]:
            modstamp[row] = stamp
        pos += size
    r = rng.random
    # Most rows were last changed by a user at their SystemModstamp; some only by the system.
    modified = [
        s if r() < 0.85 else max(HISTORY_START_MS, s - 1000 * int(r() * 30 * 86400)) for s in modstamp
    ]
    created = [m - 1000 * int(r() * (m - HISTORY_START_MS) / 1000) for m in modified]
    return created, modified, modstamp


def _dates_before(rng: random.Random, stamps: list[int], null: float) -> list[str | None]:
    """A date on or up to 60 days before each timestamp, or null."""
    r = rng.random
    out: list[str | None] = []
    for ms in stamps:
        if r() < null:
            out.append(None)
            continue
        day = (ms - HISTORY_START_MS) // DAY_MS - int(r() * 60)
        out.append(_DATES_2025_2027[max(0, day)])
    return out


def take(column: list[Any], rows: list[int]) -> list[Any]:
    """``[column[i] for i in rows]``, at C speed."""
    if len(rows) > 1:
        return list(itemgetter(*rows)(column))
    return [column[i] for i in rows]


# Which Name-object fields a row of each object fills, per the Name object reference
# (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm):
# Alias, Email, IsActive, Phone, ProfileId, Title, UserRoleId and Username only for users;
# FirstName, MiddleName and LastName for users, contacts and leads; Id, Name, NameOrAlias, Type,
# RecordTypeId, LastReferencedDate and LastViewedDate for every object (null where the object
# has no such field).
_USER_ONLY = frozenset(
    {"Alias", "Email", "IsActive", "Phone", "ProfileId", "Title", "UserRoleId", "Username"}
)
_PERSON_ONLY = frozenset({"FirstName", "MiddleName", "LastName"})
_PEOPLE = frozenset({"User", "Contact", "Lead"})


def name_value(table: Table, row: int, field_name: str) -> Any:
    """The Name object's ``field_name`` for one row of ``table`` (a polymorphic parent).

    Name is the object's name field (a Case's CaseNumber). Type is the row's kind: "Queue" for a
    queue (its Group.Type), else the object's name ("User", "Account"): the value that SOQL's
    ``Owner.Type = 'Queue'`` filters compare with.
    """
    obj = table.obj
    if field_name == "Type":
        return table.columns["Type"][row] if obj.name == "Group" else obj.name
    if (field_name in _USER_ONLY and obj.name != "User") or (
        field_name in _PERSON_ONLY and obj.name not in _PEOPLE
    ):
        return None
    if field_name in ("Name", "NameOrAlias"):  # NameOrAlias: the name (a user's Alias is its own field)
        f = next(f for f in obj.fields if f.name_field)
    else:
        found = obj.field(field_name)
        if found is None:
            return None
        f = found
    return table.getter(f)(row)


# -- tables -------------------------------------------------------------------------------------


class Table:
    """One object's rows, column-wise, with an index from the 15-character id to the row."""

    def __init__(self, obj: ObjectDef, columns: dict[str, list[Any]], serial: int) -> None:
        self.obj = obj
        self.columns = columns
        self.ids: list[str] = columns["Id"]
        self.generated = len(self.ids)
        self.first_serial = serial
        self.next_serial = serial + self.generated
        self.unique_fields = [f.name for f in obj.fields if f.unique and f.type in TEXT_TYPES]
        self.index: dict[str, int] = {}
        self._unique: dict[str, dict[str, int]] | None = None
        # Formula fields: row -> value, computed at read time (set up by the Org, which can
        # reach parent tables).
        self.formulas: dict[str, Callable[[int], Any]] = {}
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the id index (after generation or a reset); keys are the stored 18-char ids."""
        self.index = {rid: i for i, rid in enumerate(self.ids)}
        self._unique = None

    @property
    def unique(self) -> dict[str, dict[str, int]]:
        """Lower-cased value -> row for each unique text field.

        Built on the first mutation (generation never needs it, and it would cost memory on large orgs).
        """
        if self._unique is None:
            self._unique = {
                name: {v.lower(): i for i, v in enumerate(self.columns[name]) if v is not None}
                for name in self.unique_fields
            }
        return self._unique

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, record_id: str) -> int:
        """The row holding ``record_id`` (15 or 18 characters); ``NOT_FOUND`` otherwise."""
        row = self.index.get(to_18(record_id[:15])) if valid_id(record_id) else None
        if row is None or (len(record_id) == 18 and self.ids[row] != record_id):
            raise not_found()
        return row

    def deleted(self, row: int) -> bool:
        col = self.columns.get("IsDeleted")
        return bool(col and col[row])

    def getter(self, f: FieldDef) -> Callable[[int], Any]:
        """Row -> stored value of ``f`` (derived for compound and formula fields)."""
        if f.type == "address":
            return self._address_getter(f)
        if f.formula is not None:
            return self.formulas[f.name]  # computed when read, as Salesforce computes formulas
        return self.columns[f.name].__getitem__

    def renderer(self, f: FieldDef) -> Callable[[int], Any]:
        """Row -> value of ``f`` as the REST API writes it in JSON."""
        get = self.getter(f)
        if f.type == "datetime":
            return lambda i: None if (v := get(i)) is None else format_datetime(v)
        return get

    def column_renderer(self, f: FieldDef) -> Callable[[list[int]], list[Any]]:
        """Rows -> values of ``f`` as JSON values; a whole page at a time, for speed."""
        if not f.stored:
            one = self.renderer(f)
            return lambda rows: [one(i) for i in rows]
        column = self.columns[f.name]
        if f.type == "datetime":
            return lambda rows: [None if v is None else format_datetime(v) for v in take(column, rows)]
        return lambda rows: take(column, rows)

    def _address_getter(self, f: FieldDef) -> Callable[[int], Any]:
        prefix = f.name.removesuffix("Address")  # BillingAddress -> BillingStreet -> "street"
        keys = []
        for c in self.obj.components[f.name]:
            part = c.name[len(prefix) :]
            keys.append((part[0].lower() + part[1:], self.columns[c.name]))
        keys.sort()  # Salesforce writes address keys alphabetically

        def address(i: int) -> dict[str, Any] | None:
            value = {k: col[i] for k, col in keys}
            return value if any(v is not None for v in value.values()) else None

        return address

    def records(self, rows: list[int]) -> list[dict[str, Any]]:
        """Every field of these rows, as the REST API writes them (column by column, for speed)."""
        names = [f.name for f in self.obj.fields]
        columns = [self.column_renderer(f)(rows) for f in self.obj.fields]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    def record(self, row: int) -> dict[str, Any]:
        return self.records([row])[0]


# -- the org ------------------------------------------------------------------------------------


class Org:
    """The emulated org.

    Generated rows for Account, User, Subscription__c, Document, Case, Wide__c, Group, Contact, Lead and Task,
    and mutations (AggregateResult has a table that stays empty: it cannot hold rows).

    Generation is deterministic for a given ``seed`` and row count; each object draws from its
    own random stream, so adding an object never shifts another's rows. ``accounts`` counts all
    Account rows, including the few (0.5%) generated as already soft-deleted; there are
    ``accounts // 2`` Subscription__c rows, 20 users, 5 documents, 4 groups (3 of them queues,
    owning a quarter of the 40 cases), 12 contacts, 5 leads and 60 tasks. All methods are
    thread-safe.
    """

    def __init__(self, accounts: int = 250, seed: int = 7) -> None:
        self.accounts = accounts
        self.seed = seed
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {}
        self._journal: dict[tuple[str, int, str], Any] = {}
        self._by_prefix: dict[str, Table] = {}
        # The org's clock against ours: tests set it apart to play clock skew. Stamps, a Bulk
        # job's createdDate and the Date header all follow it.
        self.clock_offset_ms = 0
        self._generate()

    def now(self) -> int:
        """The org's time in epoch milliseconds."""
        return now_ms() + self.clock_offset_ms

    # -- generation -----------------------------------------------------------------------------
    def _rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def _generate(self) -> None:
        users = self._generate_users()
        self.tables["User"] = users
        self.tables["Account"] = self._generate_accounts(users)
        self.tables["Subscription__c"] = self._generate_subscriptions(users, self.tables["Account"])
        self.tables["Document"] = self._generate_documents()
        groups = self._generate_groups()
        self.tables["Group"] = groups
        self.tables["Case"] = self._generate_cases(users, groups)
        self.tables["Wide__c"] = self._generate_wide()
        self.tables["Contact"] = self._generate_contacts(users, self.tables["Account"])
        self.tables["Lead"] = self._generate_leads(users)
        self.tables["Task"] = self._generate_tasks(users)
        self.tables["ActivityFieldHistory"] = self._generate_activity_history(users, self.tables["Task"])
        self.tables["AggregateResult"] = Table(self._obj("AggregateResult"), {"Id": []}, 0)
        # The object of any id, from its key prefix (how a polymorphic reference is followed).
        self._by_prefix = {t.obj.key_prefix: t for t in self.tables.values() if t.obj.key_prefix}
        self._wire_formulas()

    def _wire_formulas(self) -> None:
        """Formula fields, evaluated when a row is read.

        Their value changes when an input changes, and no timestamp of the row moves: "formula fields are
        calculated at read time, and changes to their values don't update SystemModstamp"
        (stitchdata/docs#195, heroku/roadmap#319). ``Account_Rating__c`` follows a parent (the subscription's
        Account), so renaming or re-rating the account changes it on every child.
        """
        subs, accounts = self.tables["Subscription__c"], self.tables["Account"]
        mrr, parent = subs.columns["MRR__c"], subs.columns["Account__c"]
        rating, index = accounts.columns["Rating"], accounts.index

        def account_rating(i: int) -> Any:
            row = index.get(parent[i]) if parent[i] is not None else None
            return None if row is None else rating[row]

        subs.formulas["ARR__c"] = lambda i: None if mrr[i] is None else round(mrr[i] * 12, 2)
        subs.formulas["Account_Rating__c"] = account_rating

    def _generate_users(self) -> Table:
        rng = self._rng("User")
        n = len(_USERS)
        serial = 1000 + rng.randrange(5000)
        ids = make_ids("005", serial, n)
        created = [HISTORY_START_MS + 1000 * rng.randrange(30 * 86400) for _ in range(n)]
        modified = [c + 1000 * rng.randrange(60 * 86400) for c in created]
        cols: dict[str, list[Any]] = {
            "Id": ids,
            "Name": [_full_name(u[0], u[1]) for u in _USERS],
            "FirstName": [u[0] for u in _USERS],
            "LastName": [u[1] for u in _USERS],
            "Email": [],
            "Username": [],
            "IsActive": [k not in _INACTIVE_USERS for k in range(n)],
            "Title": [u[2] for u in _USERS],
            "Department": [u[3] for u in _USERS],
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": list(modified),
        }
        for k, u in enumerate(_USERS):
            first, last = _slug(u[0] or ""), _slug(u[1])
            local = f"{first}.{last}" if "intl" not in (first, last) else f"user{k}"
            cols["Email"].append(f"{local}@emulator.example")
            cols["Username"].append(f"{local}{k}@emulator.example")
        cols["Username"][INTEGRATION_USER_INDEX] = USERNAME
        cols["Email"][INTEGRATION_USER_INDEX] = USERNAME
        return Table(self._obj("User"), cols, serial)

    def _generate_accounts(self, users: Table) -> Table:
        rng = self._rng("Account")
        n = self.accounts
        r = rng.random
        serial = 100_000 + rng.randrange(1_000_000)
        ids = make_ids("001", serial, n)
        names, sites = _account_names()
        name_idx = [int(r() * len(names)) for _ in range(n)]
        created, modified, modstamp = _history(rng, n)
        active_owners = [users.ids[k] for k in range(len(users)) if users.columns["IsActive"][k]]
        revenue = sorted({float(round(10 ** (5 + 4.7 * r()), -3)) for _ in range(2000)})
        employees = sorted({int(10 ** (5.3 * r())) for _ in range(2000)})
        phones = [f"+1 ({200 + k % 700:03d}) 555-{(k * 7919) % 10000:04d}" for k in range(2000)] + [
            "+44 20 7946 0958",
            "+49 (0)89 123456",
            "+81-3-1234-5678",
            "(555) 010-ÆØÅ ext. 42",
        ]
        segments = [
            ";".join(SEGMENTS[j] for j in range(len(SEGMENTS)) if mask >> j & 1)
            for mask in range(1, 1 << len(SEGMENTS))
            if bin(mask).count("1") <= 3
        ]
        city_idx = [None if r() < 0.08 else int(r() * len(_CITIES)) for _ in range(n)]
        geocoded = [c is not None and r() < 0.8 for c in city_idx]
        streets = [
            f"{k * 37 % 9000 + 1} {_STREETS[k % len(_STREETS)]}" + ("\nSuite 200" if k % 7 == 0 else "")
            for k in range(400)
        ]
        postal = {k: [f"{c[3]}{j:02d}" for j in range(20)] for k, c in enumerate(_CITIES)}
        parent = [None] * n
        for i in range(1, n):
            if r() < 0.08:
                parent[i] = ids[int(r() * i)]
        deleted = [r() < 0.005 for _ in range(n)]

        cols: dict[str, list[Any]] = {
            "Id": ids,
            "IsDeleted": deleted,
            "Name": [names[k] for k in name_idx],
            "Type": _pick(rng, ACCOUNT_TYPES, n, 0.1),
            "Industry": _pick(rng, INDUSTRIES, n, 0.15),
            "AnnualRevenue": _pick(rng, revenue, n, 0.15),
            "NumberOfEmployees": _pick(rng, employees, n, 0.15),
            "Rating": _pick(rng, RATINGS, n, 0.3),
            "Website": [None if r() < 0.1 else sites[k] for k in name_idx],
            "Phone": _pick(rng, phones, n, 0.1),
            "Description": _descriptions(rng, n),
            "BillingStreet": [None if c is None else streets[int(r() * 400)] for c in city_idx],
            "BillingCity": [None if c is None else _CITIES[c][0] for c in city_idx],
            "BillingState": [None if c is None else _CITIES[c][1] for c in city_idx],
            "BillingPostalCode": [None if c is None else postal[c][int(r() * 20)] for c in city_idx],
            "BillingCountry": [None if c is None else _CITIES[c][2] for c in city_idx],
            "BillingLatitude": [
                _CITIES[c][4] if g and c is not None else None
                for c, g in zip(city_idx, geocoded, strict=True)
            ],
            "BillingLongitude": [
                _CITIES[c][5] if g and c is not None else None
                for c, g in zip(city_idx, geocoded, strict=True)
            ],
            "BillingGeocodeAccuracy": [GEOCODE_ACCURACIES[int(r() * 4)] if g else None for g in geocoded],
            "OwnerId": _pick(rng, active_owners, n),
            "ParentId": parent,
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
            "LastActivityDate": _dates_before(rng, modified, 0.4),
            "CustomerPriority__c": _pick(rng, PRIORITIES, n, 0.2),
            "SLAExpirationDate__c": _pick(rng, _DATES_2025_2027, n, 0.15),
            "NumberofLocations__c": _pick(rng, [float(k) for k in range(1, 500)], n, 0.2),
            "IsActive__c": [r() < 0.8 for _ in range(n)],
            "Health_Score__c": _pick(rng, [k / 2 for k in range(201)], n, 0.15),
            "Segment__c": _pick(rng, segments, n, 0.15),
            "Account_Number__c": [f"ACC-{k + 1:07d}" for k in range(n)],
        }
        return Table(self._obj("Account"), cols, serial)

    def _generate_subscriptions(self, users: Table, accounts: Table) -> Table:
        rng = self._rng("Subscription__c")
        n = self.accounts // 2
        r = rng.random
        serial = 20_000 + rng.randrange(100_000)
        live_accounts = [rid for k, rid in enumerate(accounts.ids) if not accounts.deleted(k)]
        created, modified, modstamp = _history(rng, n)
        mrr = [round(k * 12.5, 2) for k in range(4, 4000)]
        cols: dict[str, list[Any]] = {
            "Id": make_ids("a0B", serial, n),
            "IsDeleted": [r() < 0.005 for _ in range(n)],
            "Name": [f"SUB-{k + 1:06d}" for k in range(n)],
            "Account__c": _pick(rng, live_accounts, n, 0.05) if live_accounts else [None] * n,
            "Plan__c": _pick(rng, PLANS, n),
            "MRR__c": _pick(rng, mrr, n, 0.1),
            "Seats__c": _pick(rng, [float(k) for k in range(1, 1000)], n, 0.1),
            "Status__c": _pick(rng, STATUSES, n),
            "Renewal_Date__c": _pick(rng, _DATES_2025_2027, n, 0.1),
            "OwnerId": _pick(rng, users.ids, n),
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Subscription__c"), cols, serial)

    def _generate_documents(self) -> Table:
        rng = self._rng("Document")
        serial = 2000 + rng.randrange(5000)
        docs = [*rng.sample(_DOCUMENTS, 4), _DOCUMENT_LINK]
        n = len(docs)
        created, modified, modstamp = _history(rng, n)
        cols: dict[str, list[Any]] = {
            "Id": make_ids("015", serial, n),
            "IsDeleted": [False] * n,
            "Name": [d[0] for d in docs],
            "DeveloperName": [d[1] for d in docs],
            "Type": [d[2] for d in docs],
            "ContentType": [d[3] for d in docs],
            "BodyLength": [0 if d[4] is None else len(d[4]) for d in docs],
            "Body": [None if d[4] is None else base64.b64encode(d[4]).decode() for d in docs],
            "Description": [d[5] for d in docs],
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Document"), cols, serial)

    def _generate_groups(self) -> Table:
        rng = self._rng("Group")
        n = len(_GROUPS)
        serial = 500 + rng.randrange(5000)
        created = [HISTORY_START_MS + 1000 * rng.randrange(30 * 86400) for _ in range(n)]
        modified = [c + 1000 * rng.randrange(60 * 86400) for c in created]
        cols: dict[str, list[Any]] = {
            "Id": make_ids("00G", serial, n),
            "Name": [g[0] for g in _GROUPS],
            "DeveloperName": [g[1] for g in _GROUPS],
            "Type": [g[2] for g in _GROUPS],
            "Email": [g[3] for g in _GROUPS],
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": list(modified),
        }
        return Table(self._obj("Group"), cols, serial)

    def _generate_cases(self, users: Table, groups: Table) -> Table:
        rng = self._rng("Case")
        n = 40
        serial = 3000 + rng.randrange(5000)
        created, modified, modstamp = _history(rng, n)
        owners = _pick(rng, users.ids, n)
        # A quarter of the cases wait in a queue. Drawn from a stream of their own, so the
        # user-owned cases keep the owners they had before queues existed.
        queues = [rid for k, rid in enumerate(groups.ids) if groups.columns["Type"][k] == "Queue"]
        draw = self._rng("Case:queue").random
        owners = [queues[int(draw() * len(queues))] if k % 4 == 1 else o for k, o in enumerate(owners)]
        cols: dict[str, list[Any]] = {
            "Id": make_ids("500", serial, n),
            "IsDeleted": [False] * n,
            "CaseNumber": [f"{k + 1:08d}" for k in range(n)],
            "Subject": [f"Case {k + 1}" for k in range(n)],
            "Status": _pick(rng, CASE_STATUSES, n),
            "OwnerId": owners,
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Case"), cols, serial)

    def _generate_contacts(self, users: Table, accounts: Table) -> Table:
        rng = self._rng("Contact")
        n = len(_CONTACTS)
        serial = 7000 + rng.randrange(5000)
        live_accounts = [rid for k, rid in enumerate(accounts.ids) if not accounts.deleted(k)]
        created, modified, modstamp = _history(rng, n)
        cols: dict[str, list[Any]] = {
            "Id": make_ids("003", serial, n),
            "IsDeleted": [False] * n,
            "AccountId": _pick(rng, live_accounts, n, 0.1) if live_accounts else [None] * n,
            **_person_columns(_CONTACTS),
            "Email": [f"{_slug(c[1])}{k}@customer.example" for k, c in enumerate(_CONTACTS)],
            "Title": _pick(rng, ("CFO", "CTO", "Buyer", "Office Manager"), n, 0.3),
            "OwnerId": _pick(rng, users.ids, n),
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Contact"), cols, serial)

    def _generate_leads(self, users: Table) -> Table:
        rng = self._rng("Lead")
        n = len(_LEADS)
        serial = 8000 + rng.randrange(5000)
        created, modified, modstamp = _history(rng, n)
        cols: dict[str, list[Any]] = {
            "Id": make_ids("00Q", serial, n),
            "IsDeleted": [False] * n,
            **_person_columns(_LEADS),
            "Company": [x[2] for x in _LEADS],
            "Email": [None if k % 3 == 2 else f"{_slug(x[1])}@lead.example" for k, x in enumerate(_LEADS)],
            "Status": _pick(rng, LEAD_STATUSES, n),
            "OwnerId": _pick(rng, users.ids, n),
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Lead"), cols, serial)

    def _generate_tasks(self, users: Table) -> Table:
        """Tasks with every kind of parent.

        Related (What) to live Accounts, Subscriptions and Cases or to nothing, and about (Who) a
        Contact, a Lead or nobody.
        """
        rng = self._rng("Task")
        n = 60
        serial = 9000 + rng.randrange(5000)
        created, modified, modstamp = _history(rng, n)

        def live(name: str) -> list[str]:
            table = self.tables[name]
            return [rid for k, rid in enumerate(table.ids) if not table.deleted(k)]

        def parents(pools: tuple[list[str], ...]) -> list[str | None]:
            """Row k points into pool k mod (len + 1); the extra turn points at nothing."""
            out: list[str | None] = []
            for k in range(n):
                pool = pools[k % (len(pools) + 1)] if k % (len(pools) + 1) < len(pools) else []
                out.append(pool[int(rng.random() * len(pool))] if pool else None)
            return out

        what = parents((live("Account"), live("Subscription__c"), live("Case")))
        who = parents((live("Contact"), live("Lead")))
        cols: dict[str, list[Any]] = {
            "Id": make_ids("00T", serial, n),
            "IsDeleted": [False] * n,
            "Subject": _pick(rng, _TASK_SUBJECTS, n),
            "Status": _pick(rng, TASK_STATUSES, n),
            "WhoId": who,
            "WhatId": what,
            "ActivityDate": _dates_before(rng, modstamp, 0.3),
            "OwnerId": _pick(rng, users.ids, n),
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        return Table(self._obj("Task"), cols, serial)

    def _generate_activity_history(self, users: Table, tasks: Table) -> Table:
        """Field changes of Tasks (Status and Subject), one row each, never updated."""
        rng = self._rng("ActivityFieldHistory")
        n = 25
        serial = 3000 + rng.randrange(5000)
        created, _, _ = _history(rng, n)
        fields = _pick(rng, ("Status", "Subject"), n)
        cols: dict[str, list[Any]] = {
            "Id": make_ids("017", serial, n),
            "ActivityId": _pick(rng, tasks.ids, n),
            "ChangedById": _pick(rng, users.ids, n),
            "ChangedDate": list(created),
            "FieldName": fields,
            "DataType": ["Text"] * n,
            "Operation": ["Update"] * n,
            "OldValueText": _pick(rng, TASK_STATUSES, n),
            "NewValueText": _pick(rng, TASK_STATUSES, n),
            "CreatedDate": created,
            "SystemModstamp": list(created),
        }
        return Table(self._obj("ActivityFieldHistory"), cols, serial)

    def _generate_wide(self) -> Table:
        rng = self._rng("Wide__c")
        n = 30
        serial = 4000 + rng.randrange(5000)
        created, modified, modstamp = _history(rng, n)
        cols: dict[str, list[Any]] = {
            "Id": make_ids("a0W", serial, n),
            "IsDeleted": [False] * n,
            "Name": [f"W-{k + 1:04d}" for k in range(n)],
            "CreatedDate": created,
            "LastModifiedDate": modified,
            "SystemModstamp": modstamp,
        }
        for k in range(1, WIDE_FIELDS + 1):
            cols[f"Custom_Attribute_{k:03d}__c"] = [
                None if (row + k) % 7 == 0 else f"v{k}-{row}" for row in range(n)
            ]
        return Table(self._obj("Wide__c"), cols, serial)

    # -- lookups --------------------------------------------------------------------------------
    @staticmethod
    def _obj(name: str) -> ObjectDef:
        obj = find_object(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def table(self, name: str) -> Table:
        """The table of object ``name`` (case-insensitive); ``NOT_FOUND`` for unknown objects."""
        return self.tables[self._obj(name).name]

    def locate(self, record_id: str) -> tuple[Table, int] | None:
        """The table and row of any record, found by its id's key prefix; None if there is none."""
        table = self._by_prefix.get(record_id[:3])
        row = None if table is None else table.index.get(record_id)
        return None if table is None or row is None else (table, row)

    @property
    def integration_user_id(self) -> str:
        return self.tables["User"].ids[INTEGRATION_USER_INDEX]

    def describe(self, name: str, version: str = LATEST_VERSION) -> dict[str, Any]:
        """The describe payload of object ``name``."""
        return self._obj(name).describe(version)

    def count(self, name: str, include_deleted: bool = False) -> int:
        table = self.table(name)
        with self.lock:
            if include_deleted or "IsDeleted" not in table.columns:
                return len(table)
            return len(table) - sum(table.columns["IsDeleted"])

    def rows(self, name: str, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Every row of ``name`` as the REST API writes it (soft-deleted rows optional)."""
        table = self.table(name)
        with self.lock:
            rows = [i for i in range(len(table)) if include_deleted or not table.deleted(i)]
            return table.records(rows)

    def get(self, name: str, record_id: str) -> dict[str, Any]:
        """One row as the REST API writes it; ``ApiError`` NOT_FOUND when there is none."""
        table = self.table(name)
        with self.lock:
            return table.record(table.row_of(record_id))

    # -- mutations ------------------------------------------------------------------------------
    def update(self, name: str, record_id: str, **fields: Any) -> None:
        """Set fields of one row; SystemModstamp and LastModifiedDate become now (UTC, ms)."""
        self.update_at(self.now(), name, record_id, **fields)

    def update_at(self, stamp: int, name: str, record_id: str, **fields: Any) -> None:
        """Commit now an update whose transaction started at ``stamp`` (epoch ms, maybe past).

        Salesforce stamps SystemModstamp when the transaction runs, and the row becomes visible
        when it commits: a long transaction (flows, triggers, mass updates) makes rows appear
        with stamps older than rows already read (airbytehq/airbyte#27146, which led airbyte
        to read back 600 s). Other rows are untouched: a renamed parent does not restamp its
        children.
        """
        table = self.table(name)
        with self.lock:
            row = table.row_of(record_id)
            if table.deleted(row):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            values = self._coerce(table, fields, row=row)
            if table.obj.name in ("User", "Contact", "Lead") and {"FirstName", "LastName"} & set(values):
                first = values.get("FirstName", table.columns["FirstName"][row])
                last = values.get("LastName", table.columns["LastName"][row])
                values["Name"] = _full_name(first, last)
            _derive_body_length(table, values)
            values.setdefault("LastModifiedDate", stamp)
            values.setdefault("SystemModstamp", stamp)
            for key, value in values.items():
                self._set(table, row, key, value)

    def insert(self, name: str, fields: dict[str, Any]) -> str:
        """Add a row and return its id (a missing Account_Number__c is generated)."""
        table = self.table(name)
        obj = table.obj
        if not obj.queryable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be inserted: {obj.name}")
        with self.lock:
            values = self._coerce(table, fields, row=None)
            _derive_body_length(table, values)
            stamp = self.now()
            serial = table.next_serial
            table.next_serial += 1
            record_id = make_ids(obj.key_prefix, serial, 1)[0]
            n = len(table)
            defaults: dict[str, Any] = {
                "Id": record_id,
                "IsDeleted": False,
                "OwnerId": self.integration_user_id,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            if obj.name == "Account":
                defaults["Account_Number__c"] = f"ACC-{serial:07d}-E"
            if obj.name == "Subscription__c":
                defaults["Name"] = f"SUB-{n + 1:06d}"
            if obj.name in ("User", "Contact", "Lead"):
                defaults["Name"] = _full_name(values.get("FirstName"), values.get("LastName"))
            for f in obj.fields:
                if f.type == "boolean":
                    defaults.setdefault(f.name, f.default if f.default is not None else False)
            missing = [
                f.name
                for f in obj.fields
                if f.stored and not f.nillable and values.get(f.name) is None and defaults.get(f.name) is None
            ]
            if missing:
                raise ApiError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            for key, column in table.columns.items():
                column.append(values.get(key, defaults.get(key)))
            table.index[record_id] = n
            for key in table.unique_fields:
                value = table.columns[key][n]
                if value is not None:
                    table.unique[key][value.lower()] = n
            return record_id

    def soft_delete(self, name: str, record_id: str) -> None:
        """Move a row to the recycle bin: IsDeleted becomes true (only ``queryAll`` sees it)."""
        table = self.table(name)
        with self.lock:
            if "IsDeleted" not in table.columns:
                raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be deleted: {name}")
            row = table.row_of(record_id)
            if table.deleted(row):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            self._stamp_and_set(table, row, "IsDeleted", True)

    def undelete(self, name: str, record_id: str) -> None:
        """Restore a row from the recycle bin.

        IsDeleted becomes false and the row is stamped (Salesforce's ``undelete()`` updates
        ``SystemModstamp``, so incremental reads see it).
        """
        table = self.table(name)
        with self.lock:
            row = table.row_of(record_id)
            if not table.deleted(row):
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
            self._stamp_and_set(table, row, "IsDeleted", False)

    def reset(self) -> None:
        """Undo every mutation: back to exactly the generated rows."""
        with self.lock:
            self.clock_offset_ms = 0
            for (name, row, key), value in self._journal.items():
                self.tables[name].columns[key][row] = value
            self._journal.clear()
            for table in self.tables.values():
                for column in table.columns.values():
                    del column[table.generated :]
                table.next_serial = table.first_serial + table.generated
                table.reindex()

    def _stamp_and_set(self, table: Table, row: int, key: str, value: Any) -> None:
        stamp = self.now()
        self._set(table, row, key, value)
        self._set(table, row, "LastModifiedDate", stamp)
        self._set(table, row, "SystemModstamp", stamp)

    def _set(self, table: Table, row: int, key: str, value: Any) -> None:
        column = table.columns[key]
        if row < table.generated:
            self._journal.setdefault((table.obj.name, row, key), column[row])
        if key in table.unique_fields:
            seen = table.unique[key]
            if column[row] is not None:
                seen.pop(column[row].lower(), None)
            if value is not None:
                seen[value.lower()] = row
        column[row] = value

    def _coerce(self, table: Table, fields: dict[str, Any], row: int | None) -> dict[str, Any]:
        """Client values -> storage values, with the errors the REST API gives for bad input."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "attributes":
                continue  # clients may echo the record's attributes; Salesforce ignores them
            f = table.obj.field(key)
            if f is None or not f.stored or f.name == "Id":
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {table.obj.name}",
                )
            out[f.name] = self._coerce_value(f, value)
            if f.name in table.unique_fields and out[f.name] is not None:
                other = table.unique[f.name].get(out[f.name].lower())
                if other is not None and other != row:
                    raise ApiError(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: "
                        f"{table.ids[other]}",
                        [f.name],
                    )
        return out

    def _coerce_value(self, f: FieldDef, value: Any) -> Any:
        if value is None:
            if f.type == "boolean":
                return False  # Salesforce stores a null checkbox as false
            if not f.nillable and f.name not in ("LastModifiedDate", "SystemModstamp"):
                raise ApiError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{f.name}]",
                    [f.name],
                )
            return None
        try:
            return self._convert(f, value)
        except (TypeError, ValueError) as exc:
            raise ApiError(
                400,
                "JSON_PARSER_ERROR" if f.type in NUMBER_TYPES else "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{f.label}: value not of required type: {value!r} ({exc})",
                [f.name],
            ) from exc

    def _convert(self, f: FieldDef, value: Any) -> Any:
        if f.type == "datetime":
            return parse_datetime(value)
        if f.type == "date":
            return parse_date(value)
        if f.type == "boolean":
            if not isinstance(value, bool):
                raise TypeError("expected a boolean")
            return value
        if f.type == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError("expected an integer")
            return int(float(value))
        if f.type in NUMBER_TYPES:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            return float(value)
        if f.type in ("reference", "id"):
            return self._reference(f, str(value))
        if f.type == "base64":
            if not isinstance(value, str):
                raise TypeError("expected base64 text")
            base64.b64decode(value, validate=True)  # binascii.Error is a ValueError
            return value
        if f.type == "multipicklist" and isinstance(value, (list, tuple)):
            value = ";".join(str(v) for v in value)
        if not isinstance(value, str):
            raise TypeError("expected a string")
        if f.type == "picklist" and f.restricted and value not in f.picklist:
            raise ApiError(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.label}: bad value for restricted picklist field: {value}",
                [f.name],
            )
        if f.length and len(value) > f.length:
            raise ApiError(
                400,
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {value[:40]} (max length={f.length})",
                [f.name],
            )
        return value

    def _reference(self, f: FieldDef, value: str) -> str:
        try:
            if is_polymorphic(f):
                # Any of the targets, told apart by the id's key prefix.
                found = self._by_prefix.get(value[:3])
                if found is None or found.obj.name not in f.reference_to:
                    raise not_found()
                return found.ids[found.row_of(value)]
            target = self.tables[f.reference_to[0]]
            return target.ids[target.row_of(value)]
        except ApiError as exc:
            raise ApiError(
                400,
                "FIELD_INTEGRITY_EXCEPTION" if valid_id(value) else "MALFORMED_ID",
                f"{f.label}: id value of incorrect type: {value}",
                [f.name],
            ) from exc


def _derive_body_length(table: Table, values: dict[str, Any]) -> None:
    """Salesforce sets a Document's BodyLength (bytes) whenever its Body is written."""
    if "Body" in values and "BodyLength" in table.columns:
        body = values["Body"]
        values["BodyLength"] = 0 if body is None else len(base64.b64decode(body))
