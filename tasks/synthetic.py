"""Synthetic Danish borrower exports (fictional people, example.* addresses) for demos and tests.

Usage: python -m tasks.synthetic OUT.csv N [--seed 1] [--encoding utf-8-sig] [--delimiter ";"]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

HEADER = ("Lånernummer", "Navn", "E-mail", "Mobil", "SMS-ordning", "Nyhedsbrev", "Sprog")

FIRST_NAMES = (
    "Søren",
    "Bjørn",
    "Jørgen",
    "Åse",
    "Lærke",
    "Mads",
    "Anne",
    "Kåre",
    "Sofie",
    "Frederik",
    "Ida",
    "Freja",
    "Mikkel",
    "Rasmus",
    "Bodil",
    "Ellen",
    "Åge",
    "Gry",
    "Mette",
    "Jens",
    "Karen",
    "Niels",
    "Birthe",
    "Torben",
    "Signe",
    "Asger",
    "Maja",
    "Oskar",
    "Cæcilie",
    "Helle",
)
LAST_NAMES = (
    "Sørensen",
    "Jørgensen",
    "Møller",
    "Nørgaard",
    "Kjær",
    "Bøgh",
    "Højgaard",
    "Søndergaard",
    "Østergaard",
    "Bæk",
    "Dalsgård",
    "Lykkegård",
    "Brøndum",
    "Krøyer",
    "Jensen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Andersen",
    "Christensen",
    "Larsen",
    "Rasmussen",
    "Madsen",
    "Olsen",
)
DOMAINS = ("example.com", "example.net", "example.org")
# Leading digits of Danish mobile ranges; six more digits follow.
MOBILE_PREFIXES = (
    "20",
    "21",
    "22",
    "23",
    "24",
    "25",
    "26",
    "27",
    "28",
    "29",
    "30",
    "31",
    "40",
    "41",
    "42",
    "50",
    "51",
    "52",
    "53",
    "60",
    "61",
    "71",
    "81",
    "91",
    "92",
    "93",
)

_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})


def _local_part(first: str, last: str) -> str:
    return f"{first}.{last}".translate(_ASCII).lower()


def _mobile(index: int, offset: int) -> str:
    """A DK mobile number unique per index (up to 23.4 million), scattered over the ranges."""
    # Knuth's multiplier 2654435761 is prime, so index -> slot is one-to-one. Suffixes start
    # at 100000 because e.g. 200xxxxx and 410xxxxx are not in use.
    slot = (index * 2_654_435_761 + offset) % (len(MOBILE_PREFIXES) * 900_000)
    rest, prefix = divmod(slot, len(MOBILE_PREFIXES))
    return MOBILE_PREFIXES[prefix] + str(100_000 + rest)


def _lines(n: int, rng: random.Random, delimiter: str) -> Iterator[str]:
    """CSV lines; one 64-bit draw per row decides its columns, which keeps 1M rows fast."""
    names = [(f"{f} {la}", _local_part(f, la)) for f in FIRST_NAMES for la in LAST_NAMES]
    count = len(names)
    offset = rng.randrange(len(MOBILE_PREFIXES) * 900_000)
    recent: list[tuple[str, str]] = []  # (e-mail, mobile) of earlier rows, for duplicates
    bits_of, rand, d = rng.getrandbits, rng.random, delimiter
    for i in range(n):
        bits = bits_of(64)
        name, local = names[(bits & 0xFFFF) % count]
        # 10-bit slices as probabilities: 952/1024 = 93 %, 901/1024 = 88 %, and so on.
        email = f"{local}{i}@{DOMAINS[i % 3]}" if (bits >> 16) & 0x3FF < 952 else ""
        mobile = _mobile(i, offset) if (bits >> 26) & 0x3FF < 901 else ""
        sms = "Ja" if (bits >> 36) & 0x3FF < 410 else "Nej"
        news = "Ja" if (bits >> 46) & 0x3FF < 717 else "Nej"
        language = "en" if (bits >> 56) < 26 else "da"
        r = rand()
        if r < 0.9:
            yield f"{1_100_000_000 + i}{d}{name}{d}{email}{d}{mobile}{d}{sms}{d}{news}{d}{language}\r\n"
            if r > 0.89 and email:
                recent.append((email, mobile))
            continue
        if r > 0.97:  # the dirt real exports have
            if r > 0.998:
                yield "\r\n"  # a blank line
            name, email, mobile = _dirty((r - 0.97) / 0.03, name, email, mobile, recent, rng)
        else:
            mobile = _formatted(mobile, (r - 0.9) / 0.07)
        fields = (str(1_100_000_000 + i), name, email, mobile, sms, news, language)
        yield d.join(_quoted(v, d) for v in fields) + "\r\n"


def _quoted(value: str, delimiter: str) -> str:
    """A field as Excel writes it: in quotes, quotes doubled, only when it must be."""
    if delimiter in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _dirty(
    r: float, name: str, email: str, mobile: str, recent: list[tuple[str, str]], rng: random.Random
) -> tuple[str, str, str]:
    """One kind of dirt, picked by r in [0, 1)."""
    if r < 0.3 and email:  # a typo in the address
        at = email.index("@")
        kind = rng.randrange(4)
        if kind == 0:
            email = email[:at] + "@" + email[at:]
        elif kind == 1:
            email = email.replace("@", ".")
        elif kind == 2:
            email = email[:at].replace(".", " ", 1) + email[at:]
        else:
            email = email.rsplit(".", 1)[0]
    elif r < 0.55:  # a number that is not one
        mobile = rng.choice(("1234567", "01234567", "123456789012", "tlf. følger", "+45 0000"))
    elif r < 0.85 and recent:  # the same person again, typed differently
        email, mobile = recent[rng.randrange(len(recent))]
        email = f"  {email.upper()} " if rng.random() < 0.5 else email.capitalize()
        if mobile:
            mobile = "+45 " + " ".join(mobile[k : k + 2] for k in range(0, 8, 2))
    else:  # a name that needs quoting
        name = rng.choice((f'{name} "Lille"', f"{name}; c/o Bibliotek", f"{name}, jun."))
    return name, email, mobile


def _formatted(mobile: str, r: float) -> str:
    """A number as people type it, picked by r in [0, 1)."""
    if len(mobile) != 8:
        return mobile
    if r < 0.5:
        return " ".join(mobile[k : k + 2] for k in range(0, 8, 2))
    if r < 0.8:
        return "+45 " + mobile
    return "0045" + mobile


def write_borrowers(
    path: Path, n: int, *, seed: int = 1, encoding: str = "utf-8-sig", delimiter: str = ";"
) -> Path:
    """Write a header and `n` borrower rows (plus a few blank lines, as real exports have)."""
    if delimiter not in (";", ",", "\t"):
        raise ValueError(f"delimiter must be ';', ',' or a tab, not {delimiter!r}")
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Excel writes \r\n; an export straight from Excel is what libraries hand over. Lines are
    # joined and written in chunks: a text file encodes each write on its own, and the
    # utf-8-sig codec is slow per call.
    lines = _lines(n, rng, delimiter)
    with path.open("w", encoding=encoding, newline="") as out:
        out.write(delimiter.join(HEADER) + "\r\n")
        while chunk := "".join(islice(lines, 20_000)):
            out.write(chunk)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("n", type=int, help="number of borrower rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--encoding", default="utf-8-sig", help="utf-8-sig, utf-8 or cp1252")
    parser.add_argument("--delimiter", default=";", help="';', ',' or 'tab'")
    args = parser.parse_args(argv)
    delimiter = "\t" if args.delimiter == "tab" else args.delimiter
    write_borrowers(args.out, args.n, seed=args.seed, encoding=args.encoding, delimiter=delimiter)
    print(f"wrote {args.n} borrower rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
