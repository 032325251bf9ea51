#!/usr/bin/env python3
"""Writes recall_corpus.tsv, the labelled corpus of tests/recall.rs.

Deterministic (fixed seed, no downloads): `python3 crates/mask/tests/gen_recall_corpus.py`.

Each line is `label<TAB>text`. For an entity label (email, credit_card, iban, ssn, phone,
aws_key, private_key, jwt, secret) the entity inside the text is marked with ⟦ and ⟧ (the
markers are removed before masking); without markers the whole text is the entity. The labels
`decoy` (look-alikes) and `clean` (ordinary text) must come out of the masker unchanged.
Values are synthetic: numbers from reserved or fictional ranges where one exists, check digits
computed here.
"""

import random
import os

rng = random.Random(20261205)
rows = []


def add(label, text):
    assert "\t" not in text and "\n" not in text, text
    rows.append((label, text))


def digits(n, first=None):
    s = "".join(rng.choice("0123456789") for _ in range(n))
    if first is not None:
        s = first + s[1:]
    return s


def mark(template, value):
    return template.replace("{}", "⟦" + value + "⟧")


# ---------------------------------------------------------------- phones
PHONE_CTX = [
    "{}",
    "{}",
    "Call me at {} tomorrow.",
    '{"phone":"{}"}',
    "Tel: {}",
    "Support line {} (24/7)",
    "mobile {}.",
    "{}, available 9-17",
    "contact: {}; email later",
    "Phone number: {}",
    "reach the office on {} or by mail",
    "<td>{}</td>",
]


def phone_ctx():
    return rng.choice(PHONE_CTX)


def two():
    return digits(2)


def fr():
    n = rng.choice("1234567") if rng.random() < 0.5 else rng.choice("67")
    body = [n] + [two() for _ in range(4)]
    sub = "".join(body)
    forms = [
        "0{} {} {} {} {}".format(*body),
        "0{}.{}.{}.{}.{}".format(*body),
        "0{}-{}-{}-{}-{}".format(*body),
        "+33 {} {} {} {} {}".format(*body),
        "+33 (0){} {} {} {} {}".format(*body),
        "+33{}".format(sub),
        "0033 {} {} {} {} {}".format(*body),
        "0033{}".format(sub),
    ]
    return rng.choice(forms)


def de():
    area, sub = rng.choice(
        [("30", digits(6, rng.choice("2345679"))), ("30", digits(8, "9")),
         ("89", digits(7, "1")), ("40", digits(8, "4")), ("221", digits(7, "2")),
         ("151", digits(8, "2")), ("170", digits(7, "1")), ("6131", digits(6, "3")),
         ("3544", digits(5, "1"))]
    )
    forms = [
        "0{} {}".format(area, sub),
        "0{}/{}".format(area, sub),
        "0{}-{}".format(area, sub),
        "(0{}) {}".format(area, sub),
        "+49 {} {}".format(area, sub),
        "+49 (0){} {}".format(area, sub),
        "+49(0){} {}".format(area, sub),
        "+49{}{}".format(area, sub),
        "0049 {} {}".format(area, sub),
        "0049{}{}".format(area, sub),
    ]
    return rng.choice(forms)


def uk():
    kind = rng.random()
    if kind < 0.3:
        a, b, c = "20", "7946", digits(4)
        nat = ["0{} {} {}".format(a, b, c), "(0{}) {} {}".format(a, b, c), "0{}-{}-{}".format(a, b, c)]
        intl = "{} {} {}".format(a, b, c)
    elif kind < 0.6:
        a, b = "7700", "900" + digits(3)
        nat = ["0{} {}".format(a, b), "0{}-{}".format(a, b)]
        intl = "{} {}".format(a, b)
    else:
        a, b, c = rng.choice(["161", "121", "117", "113"]), "496", digits(4)
        nat = ["0{} {} {}".format(a, b, c), "(0{}) {} {}".format(a, b, c), "0{}-{}-{}".format(a, b, c)]
        intl = "{} {} {}".format(a, b, c)
    forms = nat + [
        "+44 " + intl,
        "+44 (0)" + intl,
        "+44(0)" + intl,
        "0044 " + intl,
        "+44" + intl.replace(" ", ""),
    ]
    return rng.choice(forms)


def jp():
    a, b, c = rng.choice(
        [(rng.choice(["90", "80", "70"]), digits(4, "1"), digits(4)), ("3", digits(4, "5"), digits(4)),
         ("6", digits(4, "6"), digits(4)), ("45", digits(3, "2"), digits(4)), ("120", digits(3, "1"), digits(3))]
    )
    forms = [
        "0{}-{}-{}".format(a, b, c),
        "0{} {} {}".format(a, b, c),
        "(0{}) {}-{}".format(a, b, c),
        "+81 {}-{}-{}".format(a, b, c),
        "+81-{}-{}-{}".format(a, b, c),
        "+81 {} {} {}".format(a, b, c),
        "0081 {} {} {}".format(a, b, c),
    ]
    return rng.choice(forms)


def india():
    m = digits(10, rng.choice("6789"))
    land_a, land_b = rng.choice([("11", digits(8, "2")), ("22", digits(8, "2")), ("80", digits(8, "4"))])
    forms = [
        "+91 {} {}".format(m[:5], m[5:]),
        "+91-{}-{}".format(m[:5], m[5:]),
        "+91{}".format(m),
        "0{} {}".format(m[:5], m[5:]),
        "0{} {} {}".format(land_a, land_b[:4], land_b[4:]),
        "0{}-{}-{}".format(land_a, land_b[:4], land_b[4:]),
        "0091 {} {}".format(m[:5], m[5:]),
        "{} {}".format(m[:5], m[5:]),
        "{}-{}".format(m[:5], m[5:]),
    ]
    return rng.choice(forms)


def br():
    area = rng.choice(["11", "21", "31", "41", "51", "61", "85"])
    mob = digits(9, "9")
    land = digits(8, rng.choice("2345"))
    forms = [
        "({}) {}-{}".format(area, mob[:5], mob[5:]),
        "({}) {}-{}".format(area, land[:4], land[4:]),
        "({}) {} {}".format(area, mob[:5], mob[5:]),
        "+55 {} {}-{}".format(area, mob[:5], mob[5:]),
        "+55 ({}) {}-{}".format(area, mob[:5], mob[5:]),
        "+55{}{}".format(area, mob),
        "0055 {} {}-{}".format(area, mob[:5], mob[5:]),
        "{} {}-{}".format(area, mob[:5], mob[5:]),
    ]
    return rng.choice(forms)


def nl():
    m = digits(8, rng.choice("12345"))
    a, sub = rng.choice([("20", digits(7, "5")), ("10", digits(7, "4")), ("30", digits(7, "2"))])
    forms = [
        "06-{}".format(m),
        "06 {}".format(m),
        "06 {} {} {} {}".format(m[:2], m[2:4], m[4:6], m[6:]),
        "0{}-{}".format(a, sub),
        "0{} {} {}".format(a, sub[:3], sub[3:]),
        "+31 6 {}".format(m),
        "+31 (0)6 {}".format(m),
        "+31 {} {} {}".format(a, sub[:3], sub[3:]),
        "0031 6 {}".format(m),
        "+316{}".format(m),
    ]
    return rng.choice(forms)


def es():
    n = digits(9, rng.choice("6789"))
    forms = [
        "{} {} {} {}".format(n[:3], n[3:5], n[5:7], n[7:]),
        "{} {} {}".format(n[:3], n[3:6], n[6:]),
        "{} {} {} {}".format(n[:2], n[2:5], n[5:7], n[7:]),
        "+34 {} {} {} {}".format(n[:3], n[3:5], n[5:7], n[7:]),
        "+34 {} {} {}".format(n[:3], n[3:6], n[6:]),
        "+34{}".format(n),
        "0034 {}".format(n),
        "0034 {} {} {}".format(n[:3], n[3:6], n[6:]),
    ]
    return rng.choice(forms)


def it():
    mob = digits(10, "3")
    land = "06" + digits(8, rng.choice("3456789"))
    mil = "02" + digits(7, rng.choice("3456789"))
    forms = [
        "{} {}".format(land[:2], " ".join([land[2:6], land[6:]])),
        "{} {}".format(mil[:2], mil[2:]),
        "{} {} {}".format(mob[:3], mob[3:6], mob[6:]),
        "{}-{}".format(mob[:3], mob[3:]),
        "{} {}".format(mob[:3], mob[3:]),
        "+39 {} {} {}".format(land[:2], land[2:6], land[6:]),
        "+39 {} {} {}".format(mob[:3], mob[3:6], mob[6:]),
        "+39{}".format(mob),
        "0039 {} {}".format(mob[:3], mob[3:]),
    ]
    return rng.choice(forms)


def au():
    mob = "4" + digits(8)
    land = rng.choice("2378") + digits(8, rng.choice("3456789"))
    forms = [
        "0{} {} {}".format(mob[:3], mob[3:6], mob[6:]),
        "0{} {} {}".format(mob[:1], mob[1:5], mob[5:]),
        "(0{}) {} {}".format(land[0], land[1:5], land[5:]),
        "0{} {} {}".format(land[0], land[1:5], land[5:]),
        "+61 {} {} {}".format(mob[:3], mob[3:6], mob[6:]),
        "+61 {} {} {}".format(land[0], land[1:5], land[5:]),
        "+61{}".format(mob),
        "0061 {} {} {}".format(mob[:3], mob[3:6], mob[6:]),
    ]
    return rng.choice(forms)


def us():
    a = rng.choice("23456789") + digits(2)
    b = rng.choice("23456789") + digits(2)
    c = digits(4)
    ext = rng.choice(["x962", " x962", "x" + digits(3), " x" + digits(5), " ext. " + digits(2),
                      " ext " + digits(3), " Ext. " + digits(4), " extension " + digits(3)])
    forms = [
        "({}) {}-{}".format(a, b, c),
        "({}){}-{}".format(a, b, c),
        "{}-{}-{}".format(a, b, c),
        "{}.{}.{}".format(a, b, c),
        "1-{}-{}-{}".format(a, b, c),
        "+1 {} {} {}".format(a, b, c),
        "+1-{}-{}-{}".format(a, b, c),
        "+1 ({}) {}-{}".format(a, b, c),
        "001-{}-{}-{}".format(a, b, c),
        "{} {} {}".format(a, b, c),
        "({}) {}-{}{}".format(a, b, c, ext),
        "{}-{}-{}{}".format(a, b, c, ext),
        "{}.{}.{}{}".format(a, b, c, ext),
        "+1-{}-{}-{}{}".format(a, b, c, ext),
        "001-{}-{}-{}{}".format(a, b, c, ext),
    ]
    return rng.choice(forms)


def intl_ext():
    base = rng.choice([uk, de, fr, nl])()
    return base + rng.choice([" ext. " + digits(2), " x" + digits(3), " ext " + digits(4)])


GENS = [fr, de, uk, jp, india, br, nl, es, it, au, us, us]
for k in range(300):
    gen = GENS[k % len(GENS)]
    add("phone", mark(phone_ctx(), gen()))
for _ in range(12):
    add("phone", mark(phone_ctx(), intl_ext()))
# The hard cases named in issue #14.
for v in ["06 12 34 56 78", "030 901820", "090-1234-5678"]:
    add("phone", v)
add("phone", mark("Support line {} (24/7)", "+4930901820"))
add("phone", mark("call {} now", "0033 6 12 34 56 78"))
add("phone", mark("office {}", "555-123-4567x962"))
add("phone", mark("Tél. : {}", "0612345678"))
add("phone", mark('{"mobile":"{}"}', "07700900123"))
add("phone", mark("phone: {}", "5551234567"))

# Written after the detectors were tuned on the above, to check they generalise: formats of
# further countries and spellings Faker and real data use.
HARD_PHONES = [
    "+49(0)8915 123456", "(03544) 12345", "+33 1 23 45 67 89", "0117 496 0123", "+44(0)117 496 0123",
    "+61 (0)2 9876 5432", "1 (555) 123-4567", "1.555.123.4567", "+1.555.123.4567", "+81 (0)3-1234-5678",
    "(+33) 6 12 34 56 78", "0049-30-901820", "+49-30-901820", "0800 123 4567", "+91 80 2345 6789",
    "+55 11 3456-7890", "(011) 3456-7890", "+31 20-1234567", "+34 91 123 45 67", "+39 02 1234 5678",
    "+7 495 123-45-67", "8 (495) 123-45-67", "+86 138 0013 8000", "010-1234-5678", "+82 10-1234-5678",
    "02-312-3456", "+852 2123 4567", "+65 6123 4567", "+27 21 123 4567", "021 123 4567",
    "+353 1 234 5678", "01 234 5678", "+41 44 668 18 00", "044 668 18 00", "+43 1 58858",
    "+32 2 555 12 12", "02 555 12 12", "+48 22 123 45 67", "022 123 45 67", "+46 8 123 456 78",
    "08-123 456 78", "+47 22 12 34 56", "+45 32 12 34 56", "+358 9 1234 567", "09 1234 567",
    "+351 21 123 4567", "+30 21 0123 4567", "+90 212 123 45 67", "0212 123 45 67", "+972 3-123-4567",
    "03-123-4567", "+971 4 123 4567", "04 123 4567", "+64 9 123 4567", "09 123 4567",
    "+52 55 1234 5678", "+54 11 1234-5678", "+57 1 234 5678", "+20 2 1234 5678", "+234 803 123 4567",
]
HARD_CTX = ["{}", "Tel: {}", "Call {} after 5pm.", '{"phone":"{}"}', "fax {}"]
for k, v in enumerate(HARD_PHONES):
    add("phone", mark(HARD_CTX[k % len(HARD_CTX)], v))

# ---------------------------------------------------------------- IBANs
IBAN_SHAPES = {
    "DE": "n18", "GB": "a4n14", "FR": "n10a1n12", "NL": "a4n10", "ES": "n20", "IT": "a1n10c12",
    "BE": "n12", "CH": "n5c12", "AT": "n16", "PL": "n24", "PT": "n21", "IE": "a4n14", "SE": "n20",
    "DK": "n14", "NO": "n11", "FI": "n14", "LU": "n3c13", "SA": "n2c18", "BR": "n23a1c1",
    "GR": "n7c16", "CZ": "n20", "HU": "n24", "RO": "a4c16", "HR": "n17", "TR": "n6c16",
    "MT": "a4n5c18", "LT": "n16", "EE": "n16", "SI": "n15", "SK": "n20",
}


def bban(shape):
    out = ""
    k = 0
    while k < len(shape):
        kind = shape[k]
        j = k + 1
        while j < len(shape) and shape[j].isdigit():
            j += 1
        n = int(shape[k + 1:j])
        for _ in range(n):
            if kind == "n":
                out += rng.choice("0123456789")
            elif kind == "a":
                out += rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            else:
                out += rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        k = j
    return out


def mod97(s):
    num = "".join(str(int(ch, 36)) for ch in s)
    return int(num) % 97


def iban(cc, wrong=False):
    b = bban(IBAN_SHAPES[cc])
    check = 98 - mod97(b + cc + "00")
    if wrong:
        check = (check + 1 + rng.randrange(90)) % 97 + 2
        if 98 - mod97(b + cc + "00") == check:
            check = check + 1 if check < 98 else 2
    return "{}{:02d}{}".format(cc, check, b)


def group4(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


IBAN_CTX = ["{}", "{}", "IBAN: {}", "pay to {} today", '{"iban":"{}"}', "Kontonummer {}.", "iban={}&amount=12"]
countries = sorted(IBAN_SHAPES)
for k in range(110):
    v = iban(countries[k % len(countries)])
    form = k % 5
    if form == 1:
        v = group4(v)
    elif form == 2:
        v = v.lower()
    elif form == 3:
        v = group4(v).lower()
    add("iban", mark(rng.choice(IBAN_CTX), v))

# ---------------------------------------------------------------- SSNs
def ssn_parts():
    while True:
        a = rng.randrange(1, 900)
        if a != 666:
            break
    return "{:03d}".format(a), "{:02d}".format(rng.randrange(1, 100)), "{:04d}".format(rng.randrange(1, 10000))


SSN_CTX = ["{}", "SSN: {}", "ssn {}", "Social Security Number {}.", '{"ssn":"{}"}', "employee {} on file"]
for k in range(70):
    a, g, s = ssn_parts()
    form = k % 4
    if form == 0:
        v, ctx = "{}-{}-{}".format(a, g, s), rng.choice(SSN_CTX)
    elif form == 1:
        v, ctx = "{} {} {}".format(a, g, s), rng.choice(SSN_CTX)
    elif form == 2:
        v, ctx = "{}{}{}".format(a, g, s), rng.choice(["SSN: {}", "ssn {}", '{"ssn":"{}"}', "social security no. {}"])
    else:
        v, ctx = "{}-{}-{}".format(a, g, s), "{}"
    add("ssn", mark(ctx, v))
add("ssn", "419 14 2628")

# ---------------------------------------------------------------- emails
LOCALS = ["ada", "o'brien", "d'angelo", "jean-luc", "first.last", "user+tag", "ops_team", "j.o'neil",
          "x", "mary.o'hara+news", "jürgen", "josé.müller", "用户", "δοκιμή", "Zoë", "a1b2c3"]
DOMAINS = ["example.com", "example.ie", "mail.example.co.uk", "sub.dept.example.org", "müller.de",
           "例え.jp", "例子.广告", "παράδειγμα.δοκιμή", "xn--mller-kva.de", "example.io", "bücher.example",
           "пример.рф", "corp-internal.net"]
EMAIL_CTX = ["{}", "{}", "Contact: {}.", "<{}>", '{"email":"{}"}', "mailto:{}?subject=hi", "send it to {}, thanks",
             "'{}'", "({})"]
for k in range(100):
    local = LOCALS[k % len(LOCALS)]
    domain = DOMAINS[(k * 7) % len(DOMAINS)]
    add("email", mark(rng.choice(EMAIL_CTX), "{}@{}".format(local, domain)))
add("email", "o'brien@example.ie")
add("email", "jürgen@müller.de")
add("email", "user@例え.jp")

# ---------------------------------------------------------------- cards
def luhn_complete(body):
    total = 0
    for k, ch in enumerate(reversed(body)):
        d = int(ch)
        if k % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def card(prefix, length):
    return luhn_complete(prefix + digits(length - len(prefix) - 1))


CARD_KINDS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("4", 13)]
CARD_CTX = ["{}", "{}", "card {} exp 12/27", '{"pan":"{}"}', "paid with {}.", "cc={}"]
for k in range(70):
    prefix, length = CARD_KINDS[k % len(CARD_KINDS)]
    c = card(prefix, length)
    form = k % 3
    if form == 1 and length == 16:
        c = " ".join(c[i:i + 4] for i in range(0, 16, 4))
    elif form == 2 and length == 16:
        c = "-".join(c[i:i + 4] for i in range(0, 16, 4))
    elif form == 1 and length == 15:
        c = "{} {} {}".format(c[:4], c[4:10], c[10:])
    add("credit_card", mark(rng.choice(CARD_CTX), c))

# ---------------------------------------------------------------- secrets
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def rand(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


for k in range(14):
    key = rng.choice(["AKIA", "ASIA"]) + rand(UPNUM, 16)
    add("aws_key", mark(rng.choice(["{}", "aws_access_key_id={}", '{"AccessKeyId":"{}"}', "key {} rotated"]), key))
for k in range(16):
    prefix = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"][k % 5]
    tok = prefix + rand(ALNUM, 36)
    if k % 4 == 3:
        tok = "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)
    add("secret", mark(rng.choice(["{}", "GITHUB_TOKEN={}", "token {} leaked", '{"gh":"{}"}', "git clone https://{}@github.com/o/r"]), tok))
for k in range(12):
    kind = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"][k % 4]
    body = rand(ALNUM + "+/", 64)
    pem = "-----BEGIN {}-----\\n{}\\n-----END {}-----".format(kind, body, kind)
    add("private_key", mark(rng.choice(["{}", '{"key":"{}"}', "config: {} end"]), pem))
import base64
import json


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


for k in range(12):
    header = b64url(json.dumps({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": digits(6), "name": "user" + digits(2), "iat": 1516239022 + k}).encode())
    tok = "{}.{}.{}".format(header, payload, rand(ALNUM + "-_", 43))
    add("jwt", mark(rng.choice(["{}", "Authorization: Bearer {}", '{"id_token":"{}"}', "jwt={}"]), tok))
for k in range(16):
    val = rand(ALNUM, 12 + k)
    add("secret", mark(rng.choice(["password={}", "api_key: {}", '{"secret":"{}"}', "DB_PASSWORD='{}'", "Authorization: Basic {}"]), val))

# ---------------------------------------------------------------- decoys
DECOYS = [
    "ORD-2024-000123", "order #100023456", "order 123456789012", "PO 4500012345", "INV-2024-0042",
    "FAC/2024/000123", "invoice 2024-000381", "ticket #48213", "tracking 1Z999AA10123456784",
    "2024-01-15", "2024-01-15 10:30:00", "2024-01-15T10:30:00.123456+00:00", "1700000000",
    "1700000000123", "15/01/2024 10:30", "01.02.2024", "05-06-2024", "05-06-2024 10:30",
    "Jan 15, 2024 10:30", "2024 01 15", "15 01 2024", "09:00-17:30", "open 24/7", "00:00:00",
    "12:34:56.789", "1.2.3", "v1.2.3.4", "version 1.2.3.4", "2.4.10-beta", "release 10.0.19045",
    "build 22621.2428", "550e8400-e29b-41d4-a716-446655440000", "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
    "€1 234,56", "$1,234.56", "1 234 567,89 €", "12 345,00", "0,99 EUR", "total 1 000 000",
    "978-3-16-148410-0", "0-306-40615-2", "ISBN 0306406152", "ISBN 978-0-306-40615-7",
    "d41d8cd98f00b204e9800998ecf8427e", "3f786850e387550fdab836ed7e6dc881de23001b",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "commit 9fceb02",
    "12 34 56", "555-1234", "call 911", "room 101", "12-34-56", "sort code 12-34-56", "account 12345678",
    "4111 1111 1111 1112", "4111111111111112", "5500-0000-0000-0005", "1234567812345670",
    "DE88 3704 0044 0532 0130 00", "de88370400440532013000", "GB83WEST12345698765432",
    "000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "666 12 3456", "order 219099999",
    "75001 Paris", "10117 Berlin", "Springfield, IL 62704", "London NW1 6XE", "42 Main Street",
    "48.8566, 2.3522", "+0000", "2+2=4", "score 3-1", "range 10-20", "0-100", "pages 120-135",
    "SKU-123456", "batch 0001", "serial 00000001", "id=0000012345", "ref 00123456789",
    "lat 51.5072 lon -0.1276", "1e-9", "3.14159", "0.123456789", "-0.0012345",
    "temperature 21.5 C", "5 x 10 cm", "size 36 38 40 42", "items 1, 2, 3, 4, 5, 6, 7",
    "chapter 12.3.4", "section 4.2.1.3", "12/27", "exp 03/29", "CVV 123", "PIN 0000",
    "icon@2x.png", "user@localhost", "npm install left-pad@1.3.0", "@mention", "price: 3 @ 4.99",
    "git@ssh", "foo@bar", "password: ********", "token: expired", "password_changed_at: 2024-01-01",
    "AKIAIOSFODNN7EXAMPL", "ghp_short", "eyJust a word", "-----BEGIN CERTIFICATE-----",
    "MAC 00:1a:2b:3c:4d:5e", "port 5432", "HTTP/1.1 200 OK", "Mozilla/5.0 (X11; Linux x86_64)",
    "epoch 1699999999", "17000000000", "duration 00:45:12", "2024-03-18 14:32:00+01",
    "qty 3 @ 12.50", "Order split into 3 shipments", "8.8 out of 10", "1,234,567", "1.234.567",
    "(2024) annual report", "(12) items", "(555) 12", "tel. ext only", "ISO 8601", "RFC 5322",
    "NL00ABNA0000000000", "XX12 3456 7890 1234", "BE00 0000 0000 0000",
]
# Also written after tuning: look-alikes from other kinds of records.
DECOYS += [
    "tracking 0034 0434 1610 9401 5902", "00340434161094015902", "account 0123 4567 8901 2345",
    "IBAN-like FR76 3000 6000 0112 3456 7890 188", "card 0000 0000 0000 0000", "phone: unknown",
    "tel: n/a", "call count 1234567", "fax 2024-01-15", "mobile app v2.3.4", "phone_verified_at 2024-01-15 10:30:00",
    "Invoice 0001234567 of 2024-02-01", "order 0612-3456 shipped", "2024-06-12 34:56", "06/12/2024",
    "06.12.2024 14:30", "pages 0012-0034", "EAN 4006381333931", "UPC 036000291452", "GTIN 00012345600012",
    "lot 0042-7", "ID 12345-67890", "ref 2024/000123", "0 1 2 3 4 5 6 7 8 9", "10 20 30 40 50 60",
    "scores 100 95 90 85", "coordinates 45.4215 -75.6972", "ratio 3:2", "1080p 60fps", "ZIP 90210-1234",
    "temp -0.5", "+/- 0.05 mm", "balance +1200.50", "delta +12.5%", "2^31-1 = 2147483647",
    "bitrate 320 kbps", "blocks 0000000000000000001", "nonce 000000001234", "year 2024, week 06",
]
for d in DECOYS:
    add("decoy", d)
# Generated decoys: invoice numbers, timestamps, prices, versions, UUIDs, hashes, wrong IBANs,
# Luhn-invalid cards.
for k in range(40):
    kind = k % 10
    if kind == 0:
        add("decoy", "INV-{}-{}".format(rng.randrange(2019, 2026), digits(6)))
    elif kind == 1:
        add("decoy", "2024-{:02d}-{:02d} {:02d}:{:02d}:{:02d}.{}".format(rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), rng.randrange(60), rng.randrange(60), digits(6)))
    elif kind == 2:
        add("decoy", "{}.{}".format(rng.randrange(1000), digits(2)))
    elif kind == 3:
        add("decoy", "v{}.{}.{}".format(rng.randrange(10), rng.randrange(30), rng.randrange(100)))
    elif kind == 4:
        add("decoy", "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}".format(rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12), rng.getrandbits(48)))
    elif kind == 5:
        add("decoy", rand("0123456789abcdef", 40))
    elif kind == 6:
        add("decoy", group4(iban(countries[k % len(countries)], wrong=True)))
    elif kind == 7:
        c = card("4", 16)
        bad = c[:-1] + str((int(c[-1]) + 1 + rng.randrange(8)) % 10)
        add("decoy", " ".join(bad[i:i + 4] for i in range(0, 16, 4)))
    elif kind == 8:
        add("decoy", digits(7))
    else:
        add("decoy", "ORD-{}-{}".format(digits(4), digits(6)))

CLEAN = [
    "Customer asked to leave the parcel with the neighbour at number 12.",
    "Delivery attempted at 14:32, nobody home. Rescheduled for 2024-03-18.",
    "Upgraded to express shipping (ticket #48213), refund of 4.99 issued.",
    "Contacted via phone, confirmed address change to apartment 4B.",
    "The quick brown fox jumps over the lazy dog.",
    "Ada Lovelace", "Grace Hopper", "José Müller", "Zoë O'Brien", "Jürgen Weiß",
    "12 Baker Street, London NW1 6XE", "Königstraße 5, 70173 Stuttgart", "Rue de Rivoli 99, 75001 Paris",
    "Please call back between 9 and 5.", "Meeting moved to 3pm on Tuesday.",
    "The invoice total is 1,234.56 USD including VAT.", "Shipped 3 of 4 items; the rest follows.",
    "status: delivered", "pending", "refunded", "on_hold", "true", "false", "null", "[]", "{}",
    '{"sku":"SKU-482913","qty":2,"price":19.99,"gift":false,"tags":["new","v2.3.1"]}',
    '{"event":"login","ok":true,"ms":42}', "SELECT * FROM customers WHERE id = 42",
    "Le client a demandé une livraison le 12/03 entre 9h et 12h.",
    "Der Kunde möchte die Rechnung per Post erhalten.", "顧客は午後に電話をかけ直します。",
    "Он позвонит завтра утром.", "¿Podría enviar la factura otra vez?",
    "It's a 2-for-1 deal until 31 March.", "Temperature was 21.5°C at 08:15.",
    "Room 4B, floor 12, building C", "We'll ship the 3 parcels on 2024-05-02.",
    "See section 4.2 and figure 7.", "O'Reilly Media", "rock'n'roll", "d'Artagnan",
    "email me later", "my password is secret", "token bucket rate limit 100/s",
    "Reset your password using the link we sent.", "The secret ingredient is love.",
    "Flight LH 400 departs at 10:05 from gate A12.", "Call sign N12345 cleared to land.",
    "Population 8,982,000 (2019 estimate).", "Model RTX-4090 with 24 GB",
    "Patch notes for 1.2.3: fixed crash on start.", "Order 123 shipped; order 124 pending.",
    "The area code changed in 1999.", "Between 06:00 and 07:30 the line is busy.",
    "3 x 4 = 12 and 12 / 4 = 3", "Latitude 40.7128° N, longitude 74.0060° W",
    "Invoice FAC-2024-0042 paid on 2024-02-01.", "ISBN-13 978-3-16-148410-0 in stock",
]
for c in CLEAN:
    add("clean", c)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "recall_corpus.tsv"), "w", encoding="utf-8") as f:
    f.write("# label<TAB>text; generated by gen_recall_corpus.py (entity marked with ⟦ ⟧, else the whole text)\n")
    for label, text in rows:
        f.write("{}\t{}\n".format(label, text))
print(len(rows), "rows")
