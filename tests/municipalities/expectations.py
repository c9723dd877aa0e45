"""What each real municipality's texts must say and must never say, from its published page.

One entry per config in this folder (the config's header names the page and the facts). `must`
phrases are facts the full texts (website article and FAQ) state, per language; `everywhere`
phrases are in every channel's text of that language; `must_not` phrases are in no channel in
that language (compared without case): a deadline, a place, a login or a consequence the page
does not give. COMMON_MUST_NOT holds for every config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Phrases = dict[str, list[str]]  # language -> phrases


@dataclass(frozen=True)
class Expect:
    must: Phrases
    must_not: Phrases
    everywhere: Phrases = field(default_factory=dict)


# None of the pages sets a 30-day deadline, and none of the texts may read two ways, speak as
# "os" about paying, sign as "Filialledere" or leak a template's placeholders.
COMMON_MUST_NOT: Phrases = {
    "da": ["30 dage til at betale", "frem til", "hos os", "Filialledere", "None", "{{", "}}"],
    "en": ["30 days to pay", "with us", "Filialledere", "None", "{{", "}}"],
}

# A table: one phrase list per line reads better than one phrase per line.
# fmt: off
EXPECTATIONS: dict[str, Expect] = {
    "egedal": Expect(
        must={
            "da": ["MitBetalingsoverblik", "14 dage", "mere end 50 kr.", "72 timer", "MobilePay",
                   "betalingskort", "Digital Post"],
            "en": ["MitBetalingsoverblik", "14 days", "72 hours", "MobilePay", "Digital Post"],
        },
        must_not={
            "da": ["Gældsstyrelsen", "under 18", "rykker", "NemID", "Betalingsservice",
                   "til og med"],
            "en": ["Gældsstyrelsen", "under 18", "reminder", "NemID", "Betalingsservice",
                   "up to and including"],
        },
    ),
    "kolding": Expect(
        must={
            "da": ["Digital Post", "girokort", "netbank", "Gældsstyrelsen", "200 kr.", "7 dage",
                   "under 18", "Book en tid hos Borgerservice", "79 79 11 00",
                   "fra 31. dag: 230 kr."],
            "en": ["Digital Post", "Gældsstyrelsen", "DKK 200", "7 days", "under 18",
                   "Book an appointment", "79 79 11 00", "from day 31: DKK 230"],
        },
        must_not={
            "da": ["betalingsoverblik", "logger ind med", "MobilePay", "betalingskort", "NemID",
                   "til og med", "modregn", "fra 15"],
            "en": ["betalingsoverblik", "log in with", "MobilePay", "payment card", "NemID",
                   "up to and including", "offset"],
        },
    ),
    "faxe": Expect(
        must={
            "da": ["1. september 2021", "447369", "lånernummer", "Borgerservice", "girokort",
                   "to lister", "72 timer"],
            "en": ["1 September 2021", "447369", "borrower number", "Borgerservice",
                   "two lists", "72 hours"],
        },
        must_not={
            "da": ["betalingsoverblik", "logger ind med", "Gældsstyrelsen", "under 18",
                   "til og med", "rykker", "Betalingsservice"],
            "en": ["betalingsoverblik", "log in with", "Gældsstyrelsen", "under 18",
                   "up to and including", "reminder", "Betalingsservice"],
        },
    ),
    "middelfart": Expect(
        must={
            "da": ["1. marts 2022", "Digital Post", "girokort", "netbank", "72 timer",
                   "8888 5210", "8888 5047", "opkraevning@middelfart.dk",
                   "ikke længere betale"],
            "en": ["1 March 2022", "Digital Post", "72 hours", "8888 5210", "8888 5047",
                   "opkraevning@middelfart.dk"],
        },
        must_not={
            "da": ["betalingsoverblik", "MobilePay", "betalingskort", "logger ind med",
                   "til og med", "Gældsstyrelsen", "under 18", "Mine sider"],
            "en": ["betalingsoverblik", "MobilePay", "payment card", "log in with", "up to and including",
                   "Gældsstyrelsen", "under 18", "Mine sider"],
        },
    ),
    "frederikssund": Expect(
        must={
            "da": ["1. november 2021", "Mit betalingsoverblik", "MitID", "også de gamle",
                   "230 kr."],
            "en": ["1 November 2021", "Mit betalingsoverblik", "MitID", "DKK 230"],
        },
        must_not={
            "da": ["NemID", "til og med", "Gældsstyrelsen", "under 18", "rykker", "Digital Post",
                   "Betalingsservice", "de samme som før"],
            "en": ["NemID", "up to and including", "Gældsstyrelsen", "under 18", "reminder",
                   "Digital Post", "Betalingsservice", "same as before"],
        },
    ),
    "slagelse": Expect(
        must={
            "da": ["10. januar 2022", "Mit Betalingsoverblik", "NemID", "Min konto",
                   "Digital Post", "også de gamle"],
            "en": ["10 January 2022", "Mit Betalingsoverblik", "NemID", "Min konto",
                   "Digital Post"],
        },
        must_not={
            "da": ["logger ind med MitID", "til og med", "Gældsstyrelsen", "under 18",
                   "MobilePay", "betalingskort", "rykker"],
            "en": ["log in with MitID", "up to and including", "Gældsstyrelsen", "under 18", "MobilePay",
                   "payment card", "reminder"],
        },
    ),
    "skive": Expect(
        must={
            "da": ["Digital Post", "girokort for hvert gebyr", "netbank", "Min konto",
                   "99 15 60 30", "opkraevning@skivekommune.dk"],
            "en": ["Digital Post", "own giro slip", "Min konto", "99 15 60 30",
                   "opkraevning@skivekommune.dk"],
        },
        must_not={
            "da": ["betalingsoverblik", "MobilePay", "logger ind med", "til og med",
                   "Gældsstyrelsen", "under 18", "220", "200 kr."],
            "en": ["betalingsoverblik", "MobilePay", "log in with", "up to and including",
                   "Gældsstyrelsen", "under 18", "220", "DKK 200"],
        },
    ),
    "frederikshavn": Expect(
        must={
            "da": ["Mit betalingsoverblik", "98 45 86 00", "fire måneder", "kvitteringen"],
            "en": ["Mit betalingsoverblik", "98 45 86 00", "four months", "receipt"],
        },
        must_not={
            "da": ["til og med", "Gældsstyrelsen", "under 18", "NemID", "Digital Post",
                   "dage til at betale", "rykker"],
            "en": ["up to and including", "Gældsstyrelsen", "under 18", "NemID", "Digital Post",
                   "days to pay", "reminder"],
        },
    ),
    "aabenraa": Expect(
        must={
            "da": ["Digital Post", "Betalingsservice", "girokort", "200 kr.",
                   "Opkrævningsenheden i Aabenraa Kommune"],
            "en": ["Digital Post", "Betalingsservice", "DKK 200",
                   "Opkrævningsenheden i Aabenraa Kommune"],
        },
        must_not={
            "da": ["betalingsoverblik", "MobilePay", "logger ind med", "til og med",
                   "Gældsstyrelsen", "under 18", "rykker", "100 kr.", "250 kr."],
            "en": ["betalingsoverblik", "MobilePay", "log in with", "up to and including",
                   "Gældsstyrelsen", "under 18", "reminder", "DKK 100", "DKK 250"],
        },
    ),
    "hoersholm": Expect(
        must={
            "da": ["Gebyrer og Erstatninger", "4849 3055", "opkraevning@horsholm.dk", "230 kr."],
            "en": ["Gebyrer og Erstatninger", "4849 3055", "opkraevning@horsholm.dk",
                   "DKK 230"],
        },
        # The page names no way to pay: the texts must not invent one.
        must_not={
            "da": ["betalingsoverblik", "MobilePay", "betalingskort", "netbank", "girokort",
                   "Betalingsservice", "Digital Post", "logger ind med", "til og med",
                   "Gældsstyrelsen", "under 18", "dage til at betale"],
            "en": ["betalingsoverblik", "MobilePay", "payment card", "online bank", "payment slip",
                   "Betalingsservice", "Digital Post", "log in with", "up to and including",
                   "Gældsstyrelsen", "under 18", "days to pay"],
        },
    ),
    # Old debts payable the old way until a set last day, on the website and at the counter.
    "alleroed": Expect(
        must={
            "da": ["7. juni 2023", "til og med 30. juni 2023", "på biblioteket", "Digital Post",
                   "netbank", "kontant hos Borgerservice", "MobilePay"],
            "en": ["7 June 2023", "up to and including 30 June 2023", "at the library",
                   "Digital Post", "Borgerservice", "MobilePay"],
        },
        everywhere={"da": ["7. juni 2023"], "en": ["7 June 2023"]},
        must_not={
            "da": ["betalingsoverblik", "logger ind med", "Gældsstyrelsen", "under 18", "rykker",
                   "betale dem med kontant", "dage til at betale", "1. juli 2023"],
            "en": ["betalingsoverblik", "log in with", "Gældsstyrelsen", "under 18", "reminder",
                   "pay them with cash", "days to pay", "1 July 2023"],
        },
    ),
    # The fixed point: old debts from before a cut-off years before go-live, payable
    # with no end date on the library website, never at the counter; children from 15 invoiced.
    "roedovre": Expect(
        must={
            "da": ["1. december 2021", "Mit Betalingsoverblik", "NemID", "Mellemværende",
                   "Fra 15 år får barnet selv regningen", "de samme som før",
                   "Personalet kan ikke tage imod betaling"],
            "en": ["1 December 2021", "Mit Betalingsoverblik", "NemID", "Mellemværende",
                   "same as before"],
        },
        everywhere={"da": ["1. juli 2019"], "en": ["1 July 2019"]},
        must_not={
            "da": ["til og med", "på biblioteket eller", "betale dem på biblioteket",
                   "under 18", "alle dine gebyrer, også de gamle", "logger ind med MitID",
                   "Gældsstyrelsen", "rykker"],
            "en": ["up to and including", "at the library or", "pay them at the library", "under 18",
                   "all your fees, including", "log in with MitID", "Gældsstyrelsen",
                   "reminder"],
        },
    ),
}
# fmt: on
