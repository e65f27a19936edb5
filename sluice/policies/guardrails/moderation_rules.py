"""Content-moderation rules: weighted patterns per category, and the contexts that make text benign.

The rules read *normalised* text (lower case, homoglyphs folded, evasions undone; see
``moderation.views``). Harm is rarely a word: "kill" is fine for a process and "shoot" for a
photo. So the patterns look for what makes text harmful — a request for operational help
("how do I poison my husband"), first-person intent ("I'm going to stab him"), abuse aimed at a
person ("you worthless loser"), dehumanising claims about a group, explicit sexual content — and
keep topic words alone weak.

Each rule is ``strong`` or not. ``BENIGN_CONTEXTS`` (defence, education, news, history, fiction,
medical and crisis support, software, games, banter) discount the weak rules and the classifier
for the categories they cover, and never the strong rules — "for my novel, tell me step by step
how to cook meth" is still a request for a recipe — except where a rule names a context in
``discounted_by`` (banter for "I'm going to kill my brother if he eats my fries, lol").

``needs`` lists words (or stems ending in ``*``) of which a text must contain one before the
rule's pattern is tried: most rules are skipped on most texts, which keeps a 2,000-token text
within the latency budget. tests/policies/test_moderation.py holds an example for every rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class ModerationRule:
    name: str
    categories: tuple[str, ...]
    weight: float  # 0..1, this rule's evidence on its own
    pattern: re.Pattern[str]
    strong: bool = False  # not discounted by benign contexts (except ``discounted_by``)
    needs: frozenset[str] = frozenset()  # one of these words or "abcd*" stems must occur; empty: always try
    discounted_by: tuple[str, ...] = ()


def word_keys(text: str) -> frozenset[str]:
    """The words of ``text`` and, as ``"abcd*"``, their first four letters, for ``needs`` look-ups."""
    words = set(_WORD.findall(text))
    return frozenset(words | {word[:4] + "*" for word in words if len(word) >= 4})


def _needs(spec: str) -> frozenset[str]:
    """Words, and stems cut to four letters ("suicid*" is "suic*"), as ``word_keys`` spells them."""
    return frozenset(item[:4] + "*" if item.endswith("*") else item for item in spec.split())


def _alt(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


def _rule(name: str, categories: str, weight: float, regex: str, *, strong: bool = False, needs: str = "",
          discounted_by: str = "") -> ModerationRule:
    return ModerationRule(name, tuple(categories.split()), weight, re.compile(regex), strong,
                          _needs(needs), tuple(discounted_by.split()))


def _fill(n: int) -> str:
    """Up to ``n`` filler words; a word is letters (so "kid's" is two of them)."""
    return r"(?:\w+\W+){0,%d}?" % n


# A filler that is not a defensive verb: "how do I *report* a scam" is not a request to scam.
_DEFENSIVE = (r"(?:report|spot|recogni[sz]e|detect|avoid|prevent|protect|identify|tell|stop|warn|block|survive|"
              r"escape|defend|handle|treat|help|deal|respond|cope|explain|teach|talk|support|recover|secure|fight\W+off)")


def _work(n: int) -> str:
    return r"(?:(?!" + _DEFENSIVE + r"\b)\w+\W+){0,%d}?" % n


# --- shared vocabulary --------------------------------------------------------------------------

HOW_TO = (r"\b(?:how\W+(?:do|can|could|would|should|might|does)\W+(?:i|we|you|one|someone|a\W+person)|how\W+to|"
          r"how\W+(?:long|much|many)\W+(?:\w+\W+){0,3}?(?:do|would|does|should|will)\W+(?:i|it|you)|"
          r"(?:best|easiest|quickest|fastest|simplest|safest|surest|most\W+\w+)\W+(?:way|method|place|time)s?\W+to|"
          r"ways?\W+to|tell\W+me\W+(?:how|exactly\W+how|the\W+steps|where|what|which)|teach\W+me|show\W+me\W+how|"
          r"(?:explain|describe)\W+how\W+to|(?:give|send|write|make|draft|create)\W+(?:me\W+)?(?:a\W+|an\W+|the\W+|some\W+)?"
          r"(?:\w+\W+){0,2}?(?:guide|instructions|steps|plan|tips|method|recipe|tutorial|script|ideas|list|manual)|"
          r"help\W+me|step\W+by\W+step|i\W+need\W+(?:a\W+way|to\W+know\W+how)|plan\W+(?:for|to|an?|the|how)|"
          r"what(?:'s|\W+is)\W+the\W+(?:best|easiest|quickest|fastest|most\W+\w+|right|lethal)|"
          r"instructions\W+(?:for|to|on)|where\W+(?:can|do|should)\W+i|tips\W+(?:for|on|to)|what\W+do\W+i\W+need\W+to|"
          r"(?:which|what)\W+(?:\w+\W+){0,3}?(?:can|should|do|could)\W+i\W+use)")
INTENT = (r"\b(?:i(?:'m|\W+am)\W+(?:going|planning|about|ready|gonna|bringing|thinking\W+(?:of|about))\W*(?:to\W+)?|"
          r"i(?:'ll|\W+will|\W+shall)\W+|i\W+(?:want|wanna|plan|intend|need|decided|am\W+going)\W*(?:to\W+)?|"
          r"i(?:'ve|\W+have)\W+decided\W+to\W+|i(?:'ve|\W+have)\W+been\W+thinking\W+(?:of|about)\W+|gonna\W+|"
          r"let(?:'s|\W+us)\W+|tonight\W+i\W+|tomorrow\W+i\W+)")

_RELATIONS = (r"wife|husband|boss|neighbou?rs?|teacher|mom|mum|mother|dad|father|brother|sister|ex|girlfriend|boyfriend|"
              r"partner|roommate|flatmate|landlord|tenant|coworker|co-worker|colleague|classmates?|son|daughter|kids?|"
              r"child(?:ren)?|baby|toddler|stepfather|stepmother|step\w+|grandmother|grandfather|grandma|grandpa|"
              r"father-in-law|mother-in-law|in-laws?|uncle|aunt|cousin|friend|rival|enemy|family|manager|employee|"
              r"cellmate|bully|bullies|nephew|niece|fianc\w*|spouse|prisoner|hostage|suspect|witness|driver|"
              r"passengers?|guards?|nurse|doctor|victims?|students?|people|person|man|woman|girl|boy|guy|human|stranger|"
              r"cop|officer|teacher|president|senator|mayor|judge|protesters|crowd|pupils|villagers|pedestrians|"
              r"worshippers|shoppers|kids|children")
PERSON = "(?:" + _alt(
    r"(?:some|any|every)(?:one|body)", r"(?:him|her|them)",
    r"(?:my|his|her|their|our|your|a|an|the|those|these|all\W+the|every\W+one\W+of\W+(?:those|the))\W+(?:\w+\W+){0,2}?(?:"
    + _RELATIONS + r")", r"(?:people|children|kids|students|villagers|pedestrians|civilians|worshippers|shoppers|a\W+crowd)",
) + r"\b)"
_VERB_END = r"(?:s|es|ed|ing|ping|bing|ning|ting)?"
HARM_VERB = "(?:" + "|".join(v + _VERB_END for v in (
    r"kill", r"murder", r"stab", r"shoot", r"strangle", r"choke", r"poison", r"drown", r"suffocate", r"smother",
    r"behead", r"decapitate", r"tortur(?:e)?", r"maim", r"mutilate", r"dismember", r"beat\W+up", r"bash", r"hurt",
    r"injure", r"assault", r"kidnap", r"abduct", r"execute", r"assassinate", r"slaughter", r"lynch", r"bludgeon",
    r"gun\W+down", r"run\W+over", r"knife", r"firebomb", r"blow\W+up", r"burn", r"slash", r"push", r"cripple",
    r"paralyze", r"disfigure", r"impale", r"electrocute", r"massacre", r"lure",
)) + r"|attack|ambush|set\W+fire\W+to)"
_WHOSE = r"(?:his|her|their|your|someone'?s|somebody'?s|(?:my|the|a)\W+\w+'?s)"
BODY_HARM = (r"(?:beat\w*\W+" + r"(?:\w+\W+){1,2}(?:to\W+death|senseless|unconscious|bloody)|"
             r"beat\w*\W+(?:my|his|her|a|the)\W+(?:wife|husband|kids?|child(?:ren)?|girlfriend|boyfriend|baby|dog|son|daughter)\b|"
             r"(?:slit|cut|slash)\w*\W+" + _WHOSE + r"\W+throat|(?:bash|cave|smash|crack|split)\w*\W+(?:in\W+)?" + _WHOSE
             + r"\W+(?:skull|head|face)|(?:break|snap)\w*\W+" + _WHOSE + r"\W+(?:neck|legs?|arms?|jaw|bones|skull|fingers)|"
             r"(?:cut|chop)\w*\W+" + _WHOSE + r"\W+(?:fingers|hands?|throat)\W+off|set\w*\W+(?:\w+\W+){0,4}?"
             r"(?:house|home|car|flat|apartment|building|tent)\W+on\W+fire)")
_HARM_NEEDS = ("kill* murd* stab shoot shot stra* chok* pois* drown suff* smot* behe* deca* tort* maim muti* dism* beat bash "
               "hurt inju* assa* kidn* abdu* exec* slau* lynch blud* gun run knife fire* blow burn* slash push* hit kick "
               "punch brea* slit cut throat cave smash crack skull set attack* ambu* split chop snap crip* para* disf* impa* "
               "elec* mass* lure")

GROUP = _alt(
    r"jews?", r"jewish\W+(?:people|folks|women|men)", r"muslims?", r"muslim\W+(?:women|men|people)", r"islam",
    r"christians?", r"catholics?", r"hindus?", r"sikhs?", r"buddhists?", r"mormons?", r"atheists?",
    r"blacks", r"black\W+(?:people|men|women|folks|neighbou?rs|kids|americans)", r"whites", r"white\W+people", r"asians?",
    r"chinese(?:\W+people)?", r"japanese", r"koreans?", r"vietnamese(?:\W+people)?", r"indians?", r"pakistanis?",
    r"arabs?", r"persians?", r"africans?", r"mexicans?", r"hispanics?", r"latinos?", r"latinas?", r"immigrants?",
    r"migrants?", r"refugees?", r"foreigners", r"roma", r"romani", r"gypsies", r"gypsy", r"irish",
    r"polish\W+(?:people|workers)", r"poles", r"somalis?", r"nigerians?", r"haitians?", r"indigenous(?:\W+people)?",
    r"natives", r"aborigines", r"gays?", r"gay\W+(?:people|men|teachers|couples)", r"lesbians?", r"homosexuals?",
    r"bisexuals?", r"queers?", r"trans(?:gender)?\W+(?:people|women|men|folks|kids)", r"transgenders?", r"trannies",
    r"tranny", r"women", r"females", r"feminists", r"disabled(?:\W+(?:people|children|kids))?", r"deaf\W+people",
    r"autistic\W+people", r"retards", r"cripples", r"people\W+with\W+(?:down\W+syndrome|disabilities|autism)",
)
_GROUP_NEEDS = ("jew jews jewish muslim muslims islam christian christians catholic catholics hindu hindus sikh sikhs "
                "buddhist buddhists mormon mormons atheist atheists blacks black whites white asian asians chinese "
                "japanese korean koreans vietnamese indian indians pakistani pakistanis arab arabs persian persians "
                "african africans mexican mexicans hispanic hispanics latino latinos latina latinas immigrant immigrants "
                "migrant migrants refugee refugees foreigners roma romani gypsies gypsy irish polish poles somali somalis "
                "nigerian nigerians haitian haitians indigenous natives aborigines gay gays lesbian lesbians homosexual "
                "homosexuals bisexual bisexuals queer queers trans transgender transgenders trannies tranny women females "
                "feminists disabled deaf autistic retards cripples people")
DEHUMANISING = _alt(
    r"vermin", r"parasites?", r"animals", r"apes", r"monkeys", r"rats", r"cockroaches", r"insects", r"pests?",
    r"plague", r"(?:a\W+)?disease", r"(?:a\W+)?cancer", r"infestation", r"filth", r"filthy", r"dirty", r"trash",
    r"garbage", r"scum", r"savages?", r"sub-?human", r"inferior", r"inbred", r"primitive", r"demons?",
    r"(?:an\W+)?abomination", r"freaks", r"perverts", r"mentally\W+ill", r"(?:all\W+)?terrorists", r"criminals",
    r"thieves", r"rapists", r"p(?:a|ae|e)dophiles", r"(?:child\W+)?molesters", r"thugs", r"invaders", r"(?:the\W+)?enemy",
    r"not\W+(?:human|people|real\W+people)", r"less\W+than\W+human", r"a\W+waste\W+of\W+oxygen", r"defective",
    r"dog-eating", r"idiots", r"morons", r"imbeciles", r"(?:too\W+)?stupid\W+to", r"useless\W+burdens?", r"worthless",
    r"(?:an?\W+)?race\W+of\W+\w+", r"predators", r"groom(?:ing|ers)?", r"carriers\W+of", r"a\W+virus", r"lazy",
    r"greedy\W+(?:vermin|rats|parasites)", r"sick", r"disgusting", r"degenerates?", r"(?:violent\W+)?fanatics?",
    r"liars?", r"traitors?", r"soulless", r"a\W+sickness", r"snakes?", r"leeches", r"backward", r"barbaric", r"barbarians",
    r"evil", r"heathens", r"zealots", r"mongrels", r"brutes", r"beasts", r"swine", r"dogs", r"diseased", r"unclean",
    r"(?:a\W+)?thief", r"(?:a\W+)?criminal", r"(?:a\W+)?terrorist", r"(?:an\W+)?animal", r"(?:a\W+)?savage", r"(?:a\W+)?rat",
    r"(?:a\W+)?parasite", r"(?:a\W+)?pig", r"robots\W+who\W+can'?t\W+think", r"a\W+drain", r"uncivili[sz]ed",
    r"useless\W+eaters", r"brainless", r"stink", r"smelly", r"scammers", r"drunks", r"drunken\W+\w+", r"a\W+swarm",
    r"(?:a\W+)?burden", r"perverts?", r"(?:sick\W+)?animals?", r"insects?", r"idiots?", r"not\W+to\W+be\W+trusted",
)
ELIMINATE = _alt(
    r"exterminated?", r"wiped?\W+out", r"purged?", r"cleansed?", r"gassed", r"deported", r"get\W+rid\W+of", r"burn(?:ed)?",
    r"banned", r"ban(?:ned)?\W+from", r"driven\W+out", r"locked\W+(?:away|up)", r"put\W+in\W+camps",
    r"thrown\W+out", r"kicked\W+out", r"sent\W+back", r"shot", r"hanged", r"killed", r"die", r"disappear",
    r"left\W+to\W+die", r"spat\W+on", r"sterili[sz]ed", r"stopped\W+by\W+any\W+means", r"segregated", r"eradicated",
)
INSULT_NOUN = _alt(
    r"idiot", r"moron", r"loser", r"failure", r"joke", r"creep", r"freak", r"slob", r"clown", r"waste\W+of\W+(?:space|air|oxygen)",
    r"piece\W+of\W+(?:shit|crap|garbage|trash|work)", r"bitch", r"whore", r"slut", r"cow", r"pig", r"rat", r"parasite",
    r"virgin", r"retard", r"imbecile", r"dumbass", r"jackass", r"asshole", r"bastard", r"scumbag", r"fatso", r"hack",
    r"disgrace", r"fraud", r"nobody", r"excuse\W+for\W+a\W+\w+", r"weirdo", r"fool", r"dork", r"thief", r"tramp", r"dimwit",
    r"hag", r"witch", r"homewrecker", r"skank", r"troll", r"worm", r"maggot", r"leech", r"twit", r"halfwit", r"cretin",
    r"lowlife", r"degenerate", r"snake", r"wimp", r"coward", r"hypocrite", r"psycho", r"lunatic", r"crybaby", r"bimbo",
)
_INSULT_ADJ = _alt(
    r"worthless", r"pathetic", r"stupid", r"dumb", r"dumbest", r"stupidest", r"ugly", r"fat", r"disgusting", r"useless",
    r"incompetent", r"revolting", r"spineless", r"brainless", r"talentless", r"repulsive", r"hideous", r"idiotic",
    r"retarded", r"annoying", r"a\W+joke", r"a\W+failure", r"a\W+disgrace", r"nothing\W+but", r"brain-?dead", r"garbage",
    r"trash",
)
_INSULT_NEEDS = ("idiot moron loser failure joke creep freak slob clown waste piece bitch whore slut cow pig rat parasite "
                 "virgin retard imbecile dumbass jackass asshole bastard scumbag fatso hack disgrace fraud nobody excuse "
                 "weirdo fool dork thief tramp dimwit worthless pathetic stupid dumb dumbest stupidest ugly fat disgusting "
                 "useless incompetent revolting spineless brainless talentless repulsive hideous idiotic retarded annoying "
                 "nothing brain braindead garbage trash hag witch home* skank troll worm maggot leech twit halfwit "
                 "cretin lowlife dege* snake wimp coward hypo* psycho luna* crybaby bimbo")

SEX_STRONG = _alt(
    r"cock", r"dick", r"pussy", r"cum", r"cumming", r"tits", r"titties", r"blow\W?jobs?", r"hand\W?jobs?",
    r"deep\W?throat\w*", r"porn\w*", r"erotica", r"erotic", r"hentai", r"gang\W?bang", r"orgy", r"cyber\W?sex",
    r"sexting", r"sext", r"smut\w*", r"horny", r"milf", r"nudes", r"xxx", r"(?:fuck(?:ing|ed|s)?|ride|riding)\W+(?:her|him|me|you|them)",
    r"(?:being|getting|get|gets|got)\W+fucked", r"sex\W+scene", r"sex\W+story", r"sex\W+chat", r"sexual\W+fantasy",
    r"sexual\W+encounter", r"sexually\W+explicit", r"dirty\W+talk", r"talk\W+dirty", r"masturbat\w+",
    r"touch(?:ing)?\W+(?:herself|himself|yourself)", r"threesome", r"stripper", r"camgirl", r"bdsm", r"incest",
    r"fingering\W+(?:her|him|herself|myself)", r"wet\W+pussy", r"hard\W+cock", r"moan(?:ed|ing)?\W+as", r"lewd",
    r"make\W+(?:her|him|me|you)\W+(?:wet|cum|hard)", r"(?:suck|lick)(?:ing|ed)?\W+(?:\w+\W+){0,3}?(?:cock|dick|nipples|pussy|breasts)",
    r"(?:suck|lick)\w*\W+(?:and\W+\w+\W+)?(?:my|your|her|his)\W+(?:\w+\W+)?(?:body|neck|thighs)",
)
_SEX_NEEDS = ("cock dick pussy cum cumming tits titties blow blowjob blowjobs hand handjob deep deepth* porn* erotica "
              "erotic hentai gang gangbang orgy cyber cybersex sexting sext smut* horny milf nudes xxx fuck* ride riding "
              "sex sexual sexually dirty talk mast* touc* threesome stripper camgirl bdsm incest fingering wet hard moan* "
              "lewd make suck* lick*")
SEX_WEAK = _alt(
    r"sex", r"sexy", r"sexual(?:ly)?", r"naked", r"nude", r"explicit", r"steamy", r"naughty", r"strip",
    r"undress", r"breasts?", r"nipples?", r"ass", r"bra", r"thighs", r"orgasm\w*", r"seduc\w+", r"aroused?", r"moan\w*",
    r"penetrat\w+", r"oral\W+sex", r"anal(?:\W+sex)?", r"lap\W?dance", r"kinky", r"bondage", r"spread\W+(?:her|his)\W+legs",
    r"in\W+bed", r"suck(?:ed|ing|s)?", r"lust\w*", r"filthy", r"dirtiest", r"hardcore", r"fuck\w*", r"during\W+sex",
)
_EXPLICIT_ADJ = (r"(?:explicit|erotic|dirty|sexy|steamy|pornographic|graphic|nsfw|smutty|filthy|hardcore|horny|sexual|"
                 r"x-rated|adult|vivid|lewd|kinky|naughty)")
_SEXUAL_WORD = (r"(?:sex\w*|erotic\w*|naked|nude|porn\w*|horny|fuck\w*|orgasm\w*|breasts?|nipples?|cock|pussy|cum|"
                r"blowjob|masturbat\w+|bed|lovers?|seduc\w+|kiss\w*|undress\w*|body|moan\w*)")
MINOR = (r"(?:\b(?:[0-9]|1[0-7])\W*(?:-|\W)?\W*(?:year|yr)s?\W*(?:-|\W)?\W*old\b|\bunder\W?age(?:d)?\b|\bminors?\b|"
         r"\b(?:little|young|teenage|pre-?teen|school)\W*(?:girls?|boys?|kids?|child(?:ren)?|students?)\b|\bchild(?:ren)?\b|"
         r"\bkids?\b|\bteen(?:ager)?s?\b|\bschool\W?girls?\b|\bschool\W?boys?\b|\bpubescent\b|\bloli\w*)")

DRUG = _alt(
    r"meth(?:amphetamine)?", r"crystal\W+meth", r"fentanyl", r"heroin", r"cocaine", r"crack(?:\W+cocaine)?", r"mdma",
    r"ecstasy", r"lsd", r"dmt", r"ghb", r"ketamine", r"pcp", r"opioids?", r"oxy(?:codone|contin)?", r"amphetamines?",
    r"adderall", r"xanax", r"molly", r"weed", r"cannabis", r"marijuana", r"drugs", r"narcotics", r"pills", r"coke",
    r"psilocybin(?:\W+mushrooms)?", r"(?:magic\W+)?mushrooms", r"shrooms", r"mescaline", r"peyote", r"acid\W+tabs",
    r"steroids", r"opium", r"codeine", r"percocets?", r"spice", r"dope", r"smack", r"bath\W+salts",
)
_DRUG_NEEDS = ("psil* shrooms mush* mesc* peyote acid steroids opium codeine perc* spice dope smack salts meth methamphetamine crystal fentanyl heroin cocaine crack mdma ecstasy lsd dmt ghb ketamine pcp opioid "
               "opioids oxy oxycodone oxycontin amphetamine amphetamines adderall xanax molly weed cannabis marijuana "
               "drugs narcotics pills coke")
WEAPON_DEVICE = _alt(
    r"pipe\W*bombs?", r"nail\W*bombs?", r"(?<!bath\W)(?<!fork\W)(?<!seed\W)(?<!photo\W)(?<!calorie\W)(?<!zip\W)bombs?",
    r"explosives?", r"explosive\W+(?:vests?|devices?)", r"suicide\W+vests?", r"molotov(?:\W+cocktails?)?", r"napalm",
    r"ricin", r"sarin", r"nerve\W+(?:gas|agents?)", r"poison(?:ous)?\W+gas", r"mustard\W+gas", r"chlorine\W+gas",
    r"anthrax", r"dirty\W+bombs?", r"ieds?", r"grenades?", r"thermite", r"flamethrowers?", r"detonators?",
    r"car\W+bombs?", r"bioweapons?", r"chemical\W+weapons?", r"tatp",
)
CONCEAL = (r"\b(?:without\W+(?:(?:getting|being)\W+(?:caught|traced|seen|recorded|detected|noticed|found)|"
           r"(?:anyone|anybody|them|him|her|the\W+\w+|my\W+\w+|police|cops)\W+(?:knowing|noticing|finding\W+out|seeing)|"
           r"(?:leaving|a)\W+(?:marks|trace|evidence)|a\W+(?:background\W+check|prescription|licen[cs]e))|"
           r"(?:look|seem)\W+like\W+(?:an\W+)?(?:accident|suicide|natural)|get\W+rid\W+of\W+the\W+body|"
           r"get\W+away\W+with|untraceable|can'?t\W+be\W+traced|never\W+finds?\W+out|(?:don'?t|won'?t|doesn'?t)\W+"
           r"(?:notice|find\W+out|see)|no\W+one\W+(?:will\W+)?(?:notices?|knows?|finds?\W+out)|anonymously|"
           r"on\W+the\W+dark\W*(?:web|net)|so\W+(?:the|that\W+the)\W+(?:police|cops|irs|auditors|teachers)|"
           r"from\W+(?:my|the|his|her)\W+(?:parents|family|teachers?|wife|husband)|illegally|off\W+the\W+books|"
           r"blame\W+it\W+on)\b")
CONCEAL_NEEDS = _needs(("without look* seem* rid away untr* trace* never don dont won wont doesn doesnt one anon* "
                           "dark police cops irs auditors teachers parents family illegally books blame"))

# --- the rules ------------------------------------------------------------------------------------

_SELF_METHOD = (r"(?:kill(?:ing)?\W+myself|end(?:ing)?\W+(?:my\W+(?:own\W+)?life|it\W+all|it\b)|tak(?:e|ing)\W+my\W+(?:own\W+)?life|"
                r"commit(?:ting)?\W+suicide|die\b|dying\b|hang(?:ing)?\W+myself|jump(?:ing)?\W+(?:off|from|in\W+front)|"
                r"overdos(?:e|ing)|od\b|slit(?:ting)?\W+my|cut(?:ting)?\W+(?:myself|my\W+(?:wrists?|arms?|thighs?))|"
                r"hurt(?:ing)?\W+myself|starv(?:e|ing)\W+myself|stop\W+eating|disappear\W+forever|never\W+wake\W+up|"
                r"not\W+wake\W+up|take\W+all\W+(?:my|the)\W+(?:pills|meds|tablets)|drown(?:ing)?\W+myself|"
                r"shoot(?:ing)?\W+myself|use\W+(?:it|them)\W+on\W+myself|make\W+it\W+happen|do\W+it\W+this\W+(?:weekend|week|time)|"
                r"go\W+to\W+sleep\W+forever)")
_SELF_NEEDS = ("kill* end ending take taking comm* die dying hang* jump* over* od slit* cut* hurt* star* stop disa* never "
               "not drown* shoot* use make do sleep")

RULES: tuple[ModerationRule, ...] = (
    # ---- violence
    _rule("violence-intent", "violence", 0.85,
          INTENT + _fill(2) + "(?:(?:" + HARM_VERB + r")\W+" + _fill(4) + PERSON + "|" + BODY_HARM + ")",
          strong=True, needs=_HARM_NEEDS, discounted_by="banter"),
    _rule("violence-how-to", "violence", 0.85,
          HOW_TO + r"\W+" + _work(5) + "(?:(?:" + HARM_VERB + r")\W+" + _fill(4) + PERSON + "|" + BODY_HARM + ")",
          strong=True, needs=_HARM_NEEDS),
    _rule("violence-purpose", "violence", 0.85,
          HOW_TO + r".{0,100}\b(?:to|when\W+i|so\W+(?:that\W+)?i\W+can|before\W+i|then)\W+(?:" + HARM_VERB + r")\W+"
          + _fill(2) + PERSON + r"|\brig\w*\W+" + _fill(3) + r"brakes\b.{0,40}\b(?:crash|die|dies|killed|dead)",
          strong=True, needs=_HARM_NEEDS + " rig rigs rigging"),
    _rule("violence-threat", "violence harassment", 0.85,
          r"\b(?:i(?:'ll|\W+will|'m\W+going\W+to|'m\W+gonna|\W+am\W+going\W+to)\W+(?:find|hunt|get|kill|hurt|end|cut|break|"
          r"smash|bash|gut|shoot|stab|make\W+you\W+(?:bleed|pay|suffer))\W+" + _fill(3) + r"(?:you|your)\b|put\W+a\W+bullet\W+in|"
          r"you(?:'ll|\W+will)\W+(?:bleed|die|be\W+dead)|you\W+won'?t\W+see\W+me\W+coming|(?:i|we)\W+know\W+where\W+you\W+live|"
          r"show\W+up\W+at\W+(?:her|his|their|your)\W+(?:door|house|home|work|office))",
          strong=True, needs="find hunt get kill hurt end cut break smash bash gut shoot stab make bullet bleed die dead "
                             "coming know show"),
    _rule("weapon-build", "violence illegal", 0.85,
          r"\b(?:make|making|build|building|assemble|construct|create|cook|mix|synthesi[sz]e|produce|rig|wire|"
          r"recipe\W+for|instructions\W+for|guide\W+to\W+making)\W+" + _fill(3) + WEAPON_DEVICE,
          strong=True, needs="bomb bombs pipe nail explo* molotov napalm ricin sarin nerve poison* mustard chlorine anthrax "
                             "dirty ied ieds grenade grenades thermite flam* deto* car biow* chemical tatp"),
    _rule("mass-violence", "violence", 0.85,
          r"\b(?:shoot(?:ing)?\W+up|(?:plan|planning|carry\W+out|commit|execute)\W+(?:a\W+|an\W+)?(?:terrorist\W+attack|"
          r"mass\W+shooting|massacre|bombing|attack\W+on)|(?:kill|hurt|shoot|injure)\W+as\W+many\W+(?:people\W+)?as|"
          r"maximum\W+casualties|drive-?by\W+shooting|take\W+up\W+arms\W+and\W+kill|ambush\W+and\W+(?:execute|kill)|"
          r"(?:firebomb|bomb|attack|burn\W+down|torch|shoot\W+up)\W+" + _fill(1) + r"(?:the\W+|a\W+)?(?:mosque|church|synagogue|"
          r"temple|school|mall|concert|festival|station|parade|stadium|shelter|clinic|rally)\b)",
          strong=True, needs="shoot shooting plan planning carry commit execute kill hurt injure maximum drive arms ambush "
                             "firebomb bomb attack burn torch"),
    _rule("poison-someone", "violence", 0.8,
          r"\b(?:lethal|fatal|deadly|killing)\W+(?:dose|amount)\b.{0,80}\b(?:to\W+give|give\W+(?:to\W+)?(?:my|his|her|him)|"
          r"in\W+(?:his|her|their|my\W+\w+'s)\W+(?:drink|food|coffee|tea|meal)|without\W+(?:anyone|them|him|her))|"
          r"\b(?:put|slip|add|mix|spike)\W+" + _fill(3) + r"(?:poison|antifreeze|cyanide|arsenic|bleach|rat\W+poison)\W+"
          + _fill(2) + r"in(?:to)?\W+(?:my|his|her|their|the)\W+" + _fill(3) + r"(?:coffee|drink|food|tea|meal|water|wine|soup)|"
          r"\b(?:poison|antifreeze|cyanide|arsenic|bleach)\b.{0,50}\b(?:put|slip|add|mix|spike)\w*\W+in(?:to)?\W+(?:my|his|her|their)"
          r"\W+" + _fill(3) + r"(?:coffee|drink|food|tea|meal|water|wine|soup)|"
          r"\bpoison(?:ing)?\W+the\W+(?:water|food|drinks?|supply|reservoir|well)\b",
          strong=True, needs="lethal fatal deadly killing put slip add mix spike poison poisoning"),
    _rule("arson-with-people", "violence illegal", 0.85,
          r"\b(?:set\W+(?:\w+\W+){0,4}?on\W+fire|set\W+fire\W+to|burn\W+down|torch)\b.{0,60}\b(?:while\W+(?:s?he|they)(?:'s|'re|\W+is|"
          r"\W+are)\W+(?:inside|asleep|sleeping|home)|with\W+(?:\w+\W+){0,2}?inside|(?:can'?t|cannot|won'?t)\W+escape)",
          strong=True, needs="set burn torch"),
    _rule("weapon-to-harm", "violence", 0.8,
          r"\b(?:guns?|rifles?|knife|knives|pistol|shotgun|machete|hammer|bat|axe|crowbar)\b.{0,40}\bto\W+(?:kill|shoot|hurt|"
          r"stab|attack|murder)\W+" + _fill(3) + PERSON + r"|\b(?:the|my)\W+(?:rifle|gun|knife|shotgun)\W+(?:is\W+)?ready\b",
          strong=True, needs="gun guns rifle rifles knife knives pistol shotgun machete hammer bat axe crowbar"),
    _rule("animal-cruelty", "violence", 0.75,
          r"\b(?:torture|hurt|kill|poison|abuse|drown|burn)\W+(?:a|my|the|his|her|their|neighbou?r'?s?)\W+(?:\w+\W+)?"
          r"(?:cat|dog|puppy|kitten|pet|animal|horse)\b.{0,60}\b(?:suffer|without|so\W+(?:it|he|she)|longer|painful)|"
          r"\b(?:make|watch)\W+(?:an?\W+|the\W+)?(?:cat|dog|animal|puppy|kitten)\W+suffer",
          strong=True, needs="torture hurt kill poison abuse drown burn make watch"),
    _rule("violent-body-harm", "violence", 0.55,
          r"\b(?:(?:slit|cut|slash)\w*\W+(?:his|her|their|your|someone'?s|the\W+\w+'?s)\W+throat|(?:bash|cave|smash|crack)\w*\W+"
          r"(?:his|her|their|your|someone'?s)\W+(?:skull|head|face)|break\w*\W+(?:someone'?s|his|her|their|a\W+\w+'?s)\W+neck|"
          r"rig\w*\W+" + _fill(3) + r"brakes|hold\W+a\W+pillow\W+over|(?:hit|beat)\w*\W+(?:a\W+woman|someone|him|her)\W+so\W+"
          r"(?:she|he|they)\W+(?:blacks?\W+out|ends?\W+up\W+in)|where\W+to\W+(?:aim|hit|stab)|where\W+should\W+i\W+(?:aim|hit|stab)|"
          r"bleed\W+out\W+fast|how\W+many\W+stab\W+wounds|which\W+(?:veins?|arter\w+)\W+" + _fill(3) + r"cut\W+to\W+make\W+"
          r"(?:my|the|him|her)|kidnapp?ing\W+(?:a|the|my)\W+(?:child|kid|girl|boy|woman)|keep\w*\W+(?:her|him|them)\W+locked\W+up|"
          + BODY_HARM + ")",
          needs="slit cut slash bash cave smash crack brea* rig hold hit beat where bleed many which kidn* keep keeping set "
                "chop split"),
    _rule("gore-detail", "violence", 0.45,
          r"\b(?:blood\W+(?:gush|spray|spurt|pour|splatter)\w*|skull\W+(?:crack|split|cav)\w*|dismember\w*|disembowel\w*|"
          r"entrails|gor(?:e|y)\b|slic(?:e|es|ing)\W+open|mutilated\W+bodies|sickening\W+detail|severed\W+(?:head|limbs)|"
          r"smashing\W+(?:his|her)\W+face|eyes\W+gouged|screams?\W+(?:and|as)\W+(?:\w+\W+){0,3}?(?:blood|bodies))",
          needs="blood skull dism* disem* entr* gore gory slice slices slicing muti* sick* seve* smas* eyes scream screams"),
    _rule("graphic-request", "violence", 0.45,
          r"\b(?:describe|write|depict|continue|narrate)\b.{0,120}\b(?:gory|gore|graphic|grisly|sickening|brutal|gruesome)\W+"
          r"(?:detail|details|description|violence|way)\b|\b(?:continue|describe|write|keep\W+going)\b.{0,60}\b(?:more|even\W+more|"
          r"extra)\W+(?:gore|gory|blood|guts|violence)\b",
          needs="gory gore graphic grisly sick* brutal grue*"),
    _rule("violent-verb-concealed", "violence", 0.3,
          r"\b(?:" + HARM_VERB + r")\W+" + _fill(1) + PERSON + r".{0,60}" + CONCEAL, needs=_HARM_NEEDS),
    # ---- self-harm
    _rule("self-harm-intent", "self_harm", 0.9, INTENT + _fill(2) + _SELF_METHOD, strong=True, needs=_SELF_NEEDS),
    _rule("self-harm-how-to", "self_harm", 0.9,
          HOW_TO + r"\W+" + _fill(3) + r"(?:kill\W+(?:myself|yourself|oneself)|commit\W+suicide|suicide|end\W+(?:my|your|one'?s)\W+"
          r"(?:own\W+)?life|end\W+it|overdose|od\b|slit\W+(?:my|your)|hang\W+(?:myself|yourself)|cut\W+(?:myself|yourself)|"
          r"self\W*-?\W*harm|hurt\W+(?:myself|yourself)|suffocate\W+(?:myself|yourself)|drown\W+(?:myself|yourself)|"
          r"starve\W+(?:myself|yourself)|purg(?:e|ing)(?!\W+(?:\w+\W+){0,2}?(?:logs?|cache|caches|files?|data|database|queues?|"
          r"tables?|records|history|memory|css|rows|messages|packages|images|branches|old|the\W+\w+))|make\W+myself\W+(?:throw\W+up|vomit|sick)|hide\W+(?:the\W+)?(?:cuts|scars|"
          r"burns)|die\b|bleed\W+out|punish\W+myself|stop\W+eating)",
          strong=True, needs="kill* comm* suic* end over* od slit hang cut self hurt suff* drown star* purg* make hide die "
                             "bleed puni* stop"),
    _rule("self-harm-method", "self_harm", 0.85,
          r"\b(?:(?:most\W+)?painless\W+way\W+to\W+(?:die|commit|kill|end)|how\W+many\W+" + _fill(2) + r"(?:pills|tablets|"
          r"sleeping\W+pills|ibuprofen|paracetamol|acetaminophen|tylenol|insulin\W+units|units\W+of\W+insulin|mg)\W+" + _fill(4)
          + r"(?:to\W+(?:die|overdose|kill\W+me|never\W+wake)|would\W+it\W+take|(?:for|would)\W+me\W+to\W+(?:die|never))|"
          r"if\W+i\W+(?:take|swallow|drink)\W+" + _fill(4) + r"will\W+i\W+die|(?:height|bridge|building|floor)\W+" + _fill(4)
          + r"(?:high\W+enough\W+to\W+kill\W+me|to\W+jump\W+from\W+to\W+(?:be\W+sure|die))|"
          r"(?:quick|fast|painless|easy|good)\W+way\W+to\W+die|(?:less|more|most)\W+painful\W+(?:for\W+)?suicide|"
          r"(?:hanging|jumping|pills)\W+(?:vs|versus|or)\W+(?:hanging|jumping|pills).{0,40}(?:kill|die|suicide)|"
          r"razor\W+blades?\W+for\W+self\W*-?\W*harm|(?:lethal|fatal|deadly)\b.{0,100}\bi(?:'m|\W+am)?\W+(?:going\W+to|want\W+to|"
          r"will|'ll|plan\W+to)\W+take\W+(?:it|them|all)|die\W+in\W+my\W+sleep\W+on\W+purpose|suicide\W+(?:note|plan|letter)|"
          r"why\W+i\W+killed\W+myself|fastest\W+way\W+to\W+bleed\W+out|(?:make\W+sure|so\W+that|until|so)\W+i\W+(?:die|don'?t\W+"
          r"wake\W+up|never\W+wake\W+up|bleed\W+out)|where\W+(?:on|in)\W+(?:the|my)\W+(?:wrists?|arms?|neck|thighs?)\W+"
          r"(?:should|do|would|can)\W+i\W+cut)",
          strong=True, needs="pain* many if height bridge buil* floor quick fast easy good less more most hang* jump* pills "
                             "razor lethal fatal deadly die suic* why fast* make so until where"),
    _rule("self-harm-ongoing", "self_harm", 0.85,
          r"\b(?:i(?:'ve|\W+have)?\W+been\W+(?:cutting|burning|hurting|starving)|i\W+(?:cut|burn|scratch|hit|punish|starve)\W+"
          r"myself|(?:cutting|purging)\W+again|i\W+slit\W+my\W+wrists?|hidden\W+razors|i\W+(?:want|need)\W+to\W+(?:die|hurt\W+myself)|"
          r"i\W+wish\W+i\W+(?:was|were)\W+dead|i\W+don'?t\W+(?:want\W+to\W+live|deserve\W+to\W+live)|i\W+want\W+to\W+be\W+dead|"
          r"better\W+off\W+(?:if\W+i\W+(?:was|were)\W+dead|without\W+me)|tonight\W+is\W+the\W+night|goodbye\W+everyone|"
          r"i(?:'m|\W+am)\W+(?:standing|sitting)\W+on\W+the\W+(?:roof|ledge|bridge)|bought\W+a\W+rope|"
          r"i(?:'m|\W+am)\W+done\W*[.,!]\W+goodbye|ready\W+to\W+use\W+it\W+on\W+myself|"
          r"(?:razors?|blades?|pills|rope)\b.{0,60}\bi(?:'m|\W+am)\W+(?:going|gonna)\W+(?:to\W+)?use\W+(?:them|it)\b)",
          strong=True, needs="been cut burn scra* hit puni* star* cutt* purg* slit hidd* want need wish don dont deserve "
                             "better toni* good* stan* sitt* bought done ready razor razors blade blades pills rope"),
    _rule("self-harm-plan-cue", "self_harm", 0.45,
          r"\b(?:i(?:'m|\W+am)\W+(?:planning|going|ready)\W+to\W+do\W+it|i(?:'ll|\W+will)\W+do\W+it\W+(?:tonight|tomorrow|soon)|"
          r"when\W+i\W+do\W+it|i(?:'ve|\W+have)\W+(?:made|got)\W+(?:my|a)\W+plan)\b",
          needs="plan* going ready do when made got"),
    _rule("eating-disorder", "self_harm", 0.8,
          r"\b(?:pro-?\W?ana|pro-?\W?mia|thinspo\w*|(?:starve|starving)\W+myself|stop\W+eating\W+(?:completely|for\W+a\W+week|"
          r"entirely)|\d{2,3}\W+calories?\W+(?:a|per)\W+day|suppress\W+(?:my\W+)?(?:hunger|appetite)|hide\W+that\W+i'?m\W+not\W+eating|"
          r"(?:throw\W+up|purge|vomit)\W+after\W+(?:every\W+)?(?:meal|eating)|(?:ribs|bones|collarbones)\W+(?:show|showing|stick)|"
          r"ignore\W+the\W+hunger|without\W+fainting|to\W+get\W+to\W+\d{2}\W*kg|starve\W+themselves|bones\W+showing|"
          r"punish\W+myself\W+(?:physically\W+)?for\W+eating|purging\b)",
          strong=True, needs="pro ana mia thin* star* stop calorie calories supp* hide throw purge vomit ribs bones coll* "
                             "ignore fain* get puni* purg*"),
    _rule("self-harm-encourage", "self_harm", 0.85,
          r"\b(?:(?:encourage|convince|tell|persuade)\W+(?:me|people|them|him|her|someone)\W+" + _fill(2) + r"(?:to\W+)?"
          r"(?:kill\W+(?:myself|themselves|himself|herself)|commit\W+suicide|starve|end\W+(?:it|my\W+life|their\W+lives)|"
          r"that\W+suicide)|glorif\w+\W+suicide|suicide\W+(?:is|as)\W+the\W+(?:right|best|only)\W+(?:choice|option|escape|answer|way))",
          strong=True, needs="enco* conv* tell pers* glor* suic*"),
    _rule("self-harm-words", "self_harm", 0.35,
          r"\b(?:suicid\w+|self\W*-?\W*harm\w*|kill\w*\W+(?:myself|yourself)|overdos\w+|end\W+my\W+life|slit\w*\W+\w*\W*wrists?|"
          r"cutting\W+myself|want\W+to\W+die|take\W+my\W+own\W+life|to\W+die\b)",
          needs="suic* self kill* over* end slit* cutt* want take die"),
    # ---- harassment
    _rule("insult-you-are", "harassment", 0.75,
          r"\byou(?:'re|\W+are|\W+r)\W+(?:(?:just|such|so|a|an|the|nothing|but|really|truly|literally|still|all)\W+){0,3}"
          + _fill(2) + r"(?:" + _INSULT_ADJ + r"|" + INSULT_NOUN + r")\b", strong=True, needs=_INSULT_NEEDS),
    _rule("insult-vocative", "harassment", 0.75,
          r"\b(?:you|hey|shut\W+(?:up|your\W+mouth)|go\W+away|get\W+lost|listen)\W*,?\W*(?:you\W+)?" + _fill(2) + INSULT_NOUN
          + r"\b|\byou\W+(?:" + _INSULT_ADJ + r")\W+" + _fill(2) + INSULT_NOUN + r"\b", strong=True, needs=_INSULT_NEEDS),
    _rule("insult-your", "harassment", 0.55,
          r"\byour\W+(?:\w+\W+)?(?:is|are)\W+" + _fill(2) + r"(?:" + _INSULT_ADJ + r"|" + INSULT_NOUN + r"|crap)\b"
          r"|\byou\W+should\W+be\W+(?:ashamed|embarrassed)\b", needs=_INSULT_NEEDS + " crap ashamed embarrassed"),
    _rule("insult-third-person", "harassment", 0.5,
          r"\b(?:s?he|they)(?:'s|'re|\W+is|\W+are)\W+" + _fill(3) + r"(?:" + _INSULT_ADJ + r"|" + INSULT_NOUN + r")\b",
          needs=_INSULT_NEEDS),
    _rule("insult-message-request", "harassment", 0.8,
          r"\b(?:write|draft|compose|send|text|tell|message|create|make|post)\b.{0,60}\b(?:telling|calling|that\W+calls|saying|"
          r"to\W+tell|tell)\W+(?:him|her|them|my\W+\w+|\w+)\W+" + _fill(4) + r"(?:" + _INSULT_ADJ + r"|" + INSULT_NOUN + r")\b"
          r"|\btell\W+(?:him|her|them|my\W+\w+|that\W+\w+(?:\W+\w+)?)\W+(?:s?he|they)(?:'s|'re|\W+is|\W+are)\W+" + _fill(3)
          + r"(?:" + _INSULT_ADJ + r"|" + INSULT_NOUN + r")\b",
          strong=True, needs="writ* draft comp* send text tell mess* crea* make post"),
    _rule("tell-to-die", "harassment", 0.8,
          r"\b(?:go\W+(?:and\W+)?(?:die|kill\W+yourself|hang\W+yourself)|kys\b|uninstall\W+life|nobody\W+(?:will\W+)?"
          r"(?:come\W+to\W+your\W+funeral|(?:ever\W+)?love\W+you|likes\W+you|wants\W+you|will\W+miss\W+you|will\W+ever\W+date|"
          r"(?:ever\W+)?(?:loves?|cares?\W+about)\W+you)|(?:everyone|everybody)\W+(?:hates|laughs\W+at)\W+you|"
          r"world\W+would\W+be\W+better\W+without\W+you|do\W+(?:everyone|us\W+all|the\W+world)\W+a\W+favou?r|"
          r"stop\W+breathing\W+my\W+air|crawl\W+(?:back\W+)?(?:under|into)|you(?:'ll|\W+will)\W+(?:never|always)\W+(?:amount|be\W+alone)|"
          r"your\W+(?:parents|mother|family)\W+must\W+be\W+(?:so\W+)?ashamed|you\W+deserve\W+(?:it|to\W+(?:die|suffer|be\W+alone))|"
          r"(?:disgust|revolt)s?\W+everyone|nobody\W+asked\W+for\W+your|nobody\W+will\W+ever\W+love\W+(?:her|him|them))",
          strong=True, needs="go kys unin* nobody everyone everybody world do stop crawl you your disg* revo*"),
    _rule("harass-request", "harassment", 0.8,
          r"\b(?:write|draft|compose|create|generate|give\W+me|list|make|send|post|suggest|come\W+up\W+with|help\W+me\W+"
          r"(?:write|make|send|create|come\W+up\W+with)|rate)\W+" + _fill(4) + r"(?:nasty|mean|cruel|hurtful|humiliating|threatening|"
          r"insulting|degrading|vicious|cruelest|harshest|most\W+humiliating|nastiest|anonymous|embarrassing|hateful)\W+"
          + _fill(2) + r"(?:comments?|messages?|texts?|insults?|nicknames|names|replies|emails?|letters?|voicemails?|captions?|"
          r"memes?|reviews?|posts?|lies|rumou?rs|page|notes?)",
          strong=True, needs="nasty mean cruel hurt* humi* thre* insu* degr* vici* crue* hars* most nast* anon* emba* hate*"),
    _rule("harass-target", "harassment", 0.75,
          r"\b(?:insult|humiliate|mock|bully|harass|torment|intimidate|scare|threaten|stalk|shame|ridicule|embarrass|"
          r"make\W+fun\W+of|make\W+" + _fill(4) + r"life\W+(?:miserable|hell|a\W+living\W+hell|a\W+nightmare)|ruin\W+" + _fill(4)
          + r"(?:life|reputation|career)|spread\W+" + _fill(2) + r"rumou?rs|exclud\w+\W+and\W+mock\w*|get\W+" + _fill(4) + r"fired\W+by|"
          r"catfish|pile-?on|mak\w+\W+(?:him|her|them|someone)\W+feel\W+(?:so\W+)?(?:worthless|isolated|like\W+garbage|"
          r"everyone\W+hates)|mess\W+with\W+(?:him|her|his\W+head|her\W+head)|keep\W+(?:on\W+)?(?:messaging|calling|texting|"
          r"harassing|spamming|sending)|hate\W+page|lies\W+about\W+(?:her|him|them|my)|anonymous\W+complaints|"
          r"(?:every|each)\W+(?:hour|day|night|morning|week)\b.{0,60}\buntil\W+(?:s?he|they|him|her)|humiliat\w+|"
          r"(?:mock\w*|mak\w+\W+fun\W+of|laugh\w*\W+at|ridicul\w*)\W+" + _fill(4) + r"(?:stutter|acne|weight|accent|teeth|lisp|looks|"
          r"body|appearance|disability|face|voice|scars?|height|hair|eyes?|nose|ears|skin|limp|wheelchair))\b",
          needs="insult humi* mock bully harass torm* inti* scare thre* stalk shame ridi* emba* make makes making ruin spre* excl* get "
                "catf* pile mess keep hate lies anon* every each laug*"),
    _rule("harass-intent", "harassment", 0.8,
          r"(?:" + INTENT + r"|" + HOW_TO + r"|\b(?:write|draft|compose|create|give\W+me|send|make)\W+)" + _fill(5)
          + r"(?:insult|humiliate|mock|bully|harass|torment|intimidate|threaten|stalk|shame|ridicule|embarrass|make\W+fun\W+of|"
          r"ruin|catfish|spam|dox+|expose|scare|rate\W+how\W+(?:ugly|fat|stupid))\b",
          strong=True, needs="insult humi* mock bully harass torm* inti* thre* stalk shame ridi* emba* make ruin catf* spam "
                             "dox doxx expose scare"),
    _rule("doxxing", "harassment", 0.8,
          r"\b(?:find|dig\W+up|look\W+up|track\W+down|post|leak|share|publish|expose|get)\W+(?:out\W+)?" + _fill(3)
          + r"(?:(?:home\W+)?address|phone\W+number|real\W+name|employer|private\W+(?:photos|pictures)|location|workplace)"
          r"(?:\W+and\W+\w+(?:\W+\w+){0,2})?\W+(?:of|for)\W+(?:the|this|that|a)\W+" + _fill(2) + r"(?:journalist|user|woman|man|girl|"
          r"guy|person|streamer|reporter|teacher|kid|blogger|critic)|\b(?:post|share|leak|publish)\W+(?:his|her|their)\W+" + _fill(2)
          + r"(?:photos|pictures|address|phone\W+number|number|real\W+name)|\bdig\W+up\W+everything\b|\bdox+(?:ing|ed)?\b",
          strong=True, needs="find dig look track post leak share publ* expose get dox doxx doxxing doxing doxxed"),
    _rule("covert-tracking", "harassment", 0.75,
          r"\b(?:track|monitor|spy\W+on|follow|read)\W+(?:all\W+)?(?:my\W+)?" + _fill(2) + r"(?:girlfriend|boyfriend|wife|husband|"
          r"partner|ex|her|him|someone)(?:'s)?\W+" + _fill(3) + r"(?:without\W+(?:her|him|them)\W+knowing|messages|location|phone)|"
          r"\bi(?:'ll|\W+will)\W+follow\W+you\b|\bburner\W+account\W+to\W+keep|\bwho\W+blocked\W+me\b",
          strong=True, needs="track moni* spy follow read burner blocked"),
    _rule("slur-directed", "harassment", 0.7,
          r"\b(?:she|he|you|this\W+\w+)(?:'s|\W+is|\W+are|'re)\W+" + _fill(3) + r"(?:slut|whore|bitch|cunt|skank)\b",
          strong=True, needs="slut whore bitch cunt skank"),
    # ---- hate
    _rule("hate-dehumanise", "hate", 0.85,
          r"\b" + GROUP + r"\W+" + _fill(4) + r"(?:are|is|r|were|remain)\W+(?:(?:all|just|nothing|but|basically|simply|literally|"
          r"a|an|the|no\W+better\W+than|like|by\W+nature|genetically|biologically|racially|every\W+one)\W+){0,4}"
          + _fill(2) + DEHUMANISING + r"\b", strong=True, needs=_GROUP_NEEDS),
    _rule("hate-they-are", "hate", 0.8,
          r"\b" + GROUP + r"\b.{0,80}\bthey(?:'re|\W+are)\W+(?:all\W+|just\W+)?" + _fill(2) + DEHUMANISING + r"\b",
          strong=True, needs=_GROUP_NEEDS),
    _rule("hate-eliminate", "hate", 0.85,
          r"\b" + GROUP + r"\W+" + _fill(4) + r"(?:should|must|need\W+to|deserve\W+to|ought\W+to|will|have\W+to)\W+(?:all\W+)?"
          r"(?:be\W+)?(?:\w+\W+)?" + ELIMINATE + r"\b"
          r"|\b(?:exterminate|wipe\W+out|purge|cleanse|gas|deport|burn|ban|drive\W+out|lock\W+up|get\W+rid\W+of|throw\W+out|"
          r"kick\W+out|send\W+back|rid\W+" + _fill(3) + r"of|shoot)\W+(?:(?:all|every|the|those|these|our|nation|country|"
          r"of|single|last|family|immigrant|every\W+one\W+of)\W+){0,4}" + GROUP + r"\b"
          r"|\b" + GROUP + r"\b.{0,60}\b(?:we|you|they)\W+(?:must|should|need\W+to|have\W+to|ought\W+to|will)\W+(?:\w+\W+)?"
          r"(?:exterminate|wipe|purge|deport|expel|kill|eradicate|get\W+rid|remove|cleanse|gas|burn)",
          strong=True, needs=_GROUP_NEEDS),
    _rule("hate-i-hate", "hate", 0.75,
          r"\bi\W+(?:hate|despise|loathe|can'?t\W+stand)\W+(?:all\W+|every\W+(?:single\W+)?|those\W+|the\W+)?" + _fill(2)
          + GROUP + r"\b", strong=True, needs="hate despise loathe stand"),
    _rule("hate-trope", "hate", 0.75,
          r"\b" + GROUP + r"\W+" + _fill(2) + r"(?:control|run|own)\W+(?:the\W+)?(?:banks|media|world|government|hollywood|money)|"
          r"\b" + GROUP + r"\b.{0,60}\bdeserve\W+(?:everything|what|it|to\W+\w+)|\b" + GROUP + r"\W+" + _fill(3)
          + r"(?:breed|multiply|spread)\w*\W+like\W+(?:\w+\W+)?(?:rats|cockroaches|rabbits|vermin|insects|animals|flies)",
          strong=True, needs="control run own deserve breed* mult* spre*"),
    _rule("hate-supremacy", "hate", 0.75,
          r"\b(?:(?:genetically|biologically|racially|naturally)\W+(?:inferior|superior)|(?:white|aryan|our)\W+race\W+"
          r"(?:is|must|should)|race\W+(?:is\W+)?(?:superior|must\W+stay\W+pure)|by\W+blood|in\W+their\W+genes|lower\W+iqs?|"
          r"fit\W+only\W+for\W+slavery|will\W+not\W+replace\W+us|(?:no\W+(?:irish|blacks|jews|dogs)\W*,?\W*){2,}|"
          r"belong\W+in\W+the\W+kitchen|never\W+have\W+been\W+given\W+rights|should\W+not\W+be\W+allowed\W+to\W+(?:vote|rent|work))",
          strong=True, needs="gene* biol* raci* natu* white aryan our race blood genes lower fit will no belong never should"),
    _rule("hate-content-request", "hate", 0.8,
          r"\b(?:jokes?|propaganda|speech|essay|flyer|sign|tweet|chant|rap|verse|poem|post|paper|argument|blog\W+post|list"
          r"|reasons)\W+" + _fill(5) + r"(?:mock|insult|demean|dehumani[sz]e|belittle|attack|prov|argu|explain|that|why)\w*\W+"
          + _fill(4) + GROUP + r"\W+" + _fill(6) + r"(?:inferior|superior|subhuman|vermin|dirty|stupid|useless|"
          r"greedy|savages?|trash|burdens?|banned|deported|thrown\W+out|emotional|criminals|terrorists|insects|filth)",
          strong=True, needs="joke jokes prop* speech essay flyer sign tweet chant rap verse poem post paper argu* blog list "
                             "reasons"),
    _rule("hate-group-insult", "hate", 0.35, r"\b" + GROUP + r"\W+" + _fill(6) + DEHUMANISING + r"\b", needs=_GROUP_NEEDS),
    # ---- sexual
    _rule("sexual-explicit-request", "sexual", 0.85,
          r"\A(?=[\s\S]*?\b(?:" + _SEXUAL_WORD + r"|erotic|pornographic|smutty|horny|x-rated|nsfw|lewd)\b)[\s\S]*?"
          r"\b(?:write|describe|tell|generate|create|continue|produce|make|give|compose|narrate|roleplay|role-play|talk|keep\W+going|"
          r"i\W+(?:want|need)|let'?s\W+have)\b.{0,60}\b" + _EXPLICIT_ADJ + r"\b.{0,40}\b(?:sex|story|scene|fanfic|poem|chat|content|"
          r"roleplay|detail|details|bedtime\W+story|fantasy|script|dialogue|version|encounter|conversation|descriptions?)",
          strong=True, needs="expl* erotic dirty sexy steamy porn* graphic nsfw smutty filthy hard* horny sexual rated "
                             "adult vivid lewd kinky naughty"),
    _rule("sexual-strong-term", "sexual", 0.6, r"\b" + SEX_STRONG + r"\b", strong=True, needs=_SEX_NEEDS),
    _rule("sexual-describe-body", "sexual", 0.8,
          r"\b(?:describe|tell\W+me\W+about|show\W+me|send\W+me)\W+" + _fill(3) + r"(?:naked|nude|tits|boobs|breasts|ass|body)\b"
          r".{0,60}\b(?:sex|sexy|sexual|naked|in\W+bed|explicit|detail|sexily)"
          r"|\b(?:describe|write)\W+" + _fill(4) + r"(?:having|have)\W+(?:rough\W+)?sex\b"
          r"|\bsend\W+(?:me\W+)?nudes\b|\bstrip\W+for\W+me\b|\bundress\W+(?:for\W+me|and)\b|\b(?:she|he)\W+spread\W+(?:her|his)\W+legs",
          strong=True, needs="desc* tell show send strip undr* spread"),
    _rule("intimate-image-abuse", "sexual harassment", 0.8,
          r"\b(?:nude|naked|intimate|sexy|private)\W+(?:photos?|pictures?|pics|videos?|photo\W+caption)\b.{0,120}\b(?:(?:s?he|they)"
          r"\W+(?:doesn'?t|don'?t)\W+know|without\W+(?:her|his|their)\W+(?:consent|permission|knowing)|revenge)",
          strong=True, needs="nude naked inti* sexy private"),
    _rule("sexual-minor", "sexual illegal", 0.9,
          r"(?:" + MINOR + r".{0,80}\b(?:erotic\w*|sexual\W+way|sexually\W+(?:explicit|touched)|having\W+sex|naked|nude|touched|"
          r"seduc\w+|first\W+time\W+having\W+sex|sex\W+scene|sexy|porn\w*)"
          r"|\b(?:erotic\w*|sexual\W+story|sexy\W+story|sex\W+scene|porn\w*|naked|nude|touched\W+sexually)\W+" + _fill(6) + MINOR + r")",
          needs="erotic sexual sexually sex naked nude touc* seduc* sexy porn*"),
    _rule("sexual-weak-terms", "sexual", 0.2, r"\b" + SEX_WEAK + r"\b",
          needs="sex sexy sexual sexually naked nude expl* steamy naughty strip undr* breast breasts nipple nipples ass bra "
                "thighs orga* seduc* arou* moan* pene* oral anal lap lapdance kinky bond* spread bed suck* lust* filthy "
                "dirtiest hard* fuck* during"),
    _rule("sexual-roleplay", "sexual", 0.7,
          r"\b(?:roleplay|role-play|pretend|you\W+are|you're)\b.{0,60}\b(?:my\W+(?:slave|sex|horny)|horny|naughty|camgirl|stripper|"
          r"punished\W+sexually|sexy\W+chat|sponge\W+bath)", strong=True, needs="role* pret* you"),
    # ---- illegal
    _rule("drug-manufacture", "illegal", 0.85,
          r"(?:" + HOW_TO + r"|" + INTENT + r"|\b(?:list|give\W+me)\W+(?:the\W+)?(?:chemicals|ingredients|equipment))\W*" + _work(4)
          + r"(?:make|making|cook|cooking|synthesi[sz]e|produce|manufacture|extract|brew|grow)\W+" + _fill(3) + DRUG
          + r"\b(?!\W+(?:test|testing|addiction|policy|interactions?))|\b(?:recipe|steps|instructions|guide)\W+(?:for|to)\W+"
          r"(?:\w+\W+){0,2}?" + DRUG + r"\b", strong=True, needs=_DRUG_NEEDS),
    _rule("drug-manufacture-mention", "illegal", 0.45,
          r"\b(?:make|making|cook|cooking|synthesi[sz]e|produce|manufacture|extract|brew)\W+" + _fill(3) + DRUG
          + r"\b(?!\W+(?:test|testing|addiction|policy|interactions?))", needs=_DRUG_NEEDS),
    _rule("drug-trade", "illegal", 0.75,
          r"(?:" + HOW_TO + r"|" + INTENT + r")\W*" + _work(3) + r"(?:sell|deal|smuggle|traffic|move|ship|resell|buy|get|order)\W+"
          + _fill(3) + DRUG + r"\b(?!\W+(?:test|testing|addiction|policy|interactions?))", strong=True, needs=_DRUG_NEEDS),
    _rule("theft", "illegal", 0.8,
          r"(?:" + HOW_TO + r"|" + INTENT + r")\W*" + _work(3) + r"(?:steal|shoplift|rob|burgle|burglari[sz]e|break\W+into|"
          r"pickpocket|hotwire|skim|embezzle|poach|loot|mug|snatch)\w*\b",
          strong=True, needs="steal stea* shop* rob robb* burg* break pick* hotw* skim* embe* poach* loot* mug snat*"),
    _rule("fraud-request", "illegal", 0.8,
          r"\b(?:write|create|draft|make|generate|give\W+me|help\W+me\W+(?:create|set\W+up|make|write)|set\W+up|design|"
          r"build|run)\W+" + _work(4) + r"(?:phishing|scam|ponzi|pyramid\W+scheme|fake\W+(?:invoice|reviews?|accounts|ids?|"
          r"passports?|driver'?s\W+licen[cs]es?|documents|payslips?)|counterfeit|convincing\W+email\W+from\W+the\W+ceo)",
          strong=True, needs="phis* scam ponzi pyra* fake coun* conv*"),
    _rule("fraud-how-to", "illegal", 0.8,
          HOW_TO + r"\W+" + _work(4) + r"(?:launder|counterfeit|forge|cheat\W+on\W+(?:my\W+)?taxes|evade\W+(?:taxes|police|the\W+irs|"
          r"customs)|commit\W+(?:insurance|tax|credit\W+card|wire)?\W*fraud|scam|bribe|embezzle|print\W+counterfeit|"
          r"get\W+a\W+fake|fake\W+(?:id|passport|licen[cs]e)|make\W+a\W+fake|pass\W+a\W+drug\W+test|cheat\W+the\W+casino|"
          r"rent\W+out\W+an?\W+\w+\W+i\W+don'?t\W+own|traffic\W+(?:people|humans|women|children|migrants)|smuggle)",
          strong=True, needs="laun* coun* forge cheat evade comm* scam bribe embe* print get fake make pass rent traf* smug*"),
    _rule("fraud-terms", "illegal", 0.4,
          r"\b(?:launder\w*\W+(?:the\W+)?(?:cash|money|proceeds)|counterfeit\W+(?:money|bills|banknotes|\d+\W+dollar)|"
          r"ponzi|stolen\W+(?:credit\W+cards?|card\W+numbers|ssn|identit\w+)|fake\W+(?:id|passport)|insurance\W+fraud|"
          r"staging\W+a\W+car\W+accident|wire\W+\$?\d+.{0,30}\bto\W+my\W+account|scam\W+(?:\w+\W+)?(?:buyers|tourists|"
          r"old\W+people|elderly|people)|pretending\W+to\W+be\W+(?:their|from))\b",
          needs="laun* coun* ponzi stolen fake insu* stag* wire scam pret*"),
    _rule("cyber-attack", "illegal", 0.8,
          r"\b(?:write|create|code|build|develop|give\W+me|make|generate|program)\W+" + _fill(3) + r"(?:ransomware|malware|"
          r"keylogger|virus|trojan|botnet|rootkit|spyware|worm|stealer|exploit|payloads?|ddos\W+tool)\b"
          r"|\bhack\W+into\b|\b(?:run|launch|do)\W+a\W+ddos\b|\bddos\W+(?:attack\W+)?(?:against|on)\W+(?:my\W+competitor|"
          r"a\W+\w+|the\W+\w+)|\bbrute-?\W?force\W+(?:the\W+)?(?:logins?|passwords?)\W+(?:on|of|for)\b|\bsql\W+injection\W+"
          r"payloads?\W+to\W+dump|\bcrack\W+the\W+(?:wi-?fi|wpa\d?)\W+password|\bget\W+root\W+on\b|\bclone\W+a\W+sim\b|"
          r"\bintercept\W+(?:someone'?s|her|his|their)\b|\bsite\W+i\W+don'?t\W+own\b|\bget\W+into\W+(?:someone'?s|her|his)\W+"
          r"(?:bank|email|phone|account)",
          strong=True, needs="rans* malw* keyl* virus trojan botnet root* spyw* worm stea* expl* payl* ddos hack run brute "
                             "sql crack get clone inte* site"),
    _rule("weapon-acquire", "illegal violence", 0.8,
          r"\b(?:buy|get|order|obtain|acquire|purchase)\W+(?:a\W+|an\W+)?" + _fill(2) + r"(?:guns?|firearms?|rifles?|pistols?|"
          r"weapons?|ammo|ammunition)\b.{0,40}\b(?:without\W+(?:a\W+)?(?:background\W+check|licen[cs]e|papers)|illegal\w*|"
          r"anonymously|on\W+the\W+dark)|\b(?:convert|modify)\W+" + _fill(5) + r"(?:to|into)\W+(?:fully\W+)?automatic|"
          r"\bauto\W+sear\b|\bghost\W+guns?\b|\b(?:make|build)\W+(?:a\W+)?(?:silencer|suppressor)|illegal\W+firearms",
          strong=True, needs="buy get order obta* acqu* purc* conv* modi* auto ghost make build ille*"),
    _rule("break-in", "illegal", 0.7,
          r"\b(?:pick|bypass|disable|defeat|jam)\W+(?:the\W+)?(?:lock|alarm|security|camera)s?\b.{0,60}\b(?:steal|break\W+in|"
          r"house|store|shop|jewel\w*|car\W+door|neighbou?r|at\W+night|without)|\brelay\W+attack\b.{0,40}\b(?:steal)",
          strong=True, needs="pick bypass disa* defeat jam relay"),
    _rule("illegal-words", "illegal", 0.35,
          r"\b(?:steal|stolen|shoplift\w*|smuggl\w+|launder\w*|counterfeit|forg(?:e|ery)|bribe\w*|poach\w*|embezzl\w+|"
          r"traffick?\w*|fraud\w*|scam\w*|hack\w*|illegal\w*|ivory|skimm\w+)\b",
          needs="steal stolen shop* smug* laun* coun* forge forgery brib* poach* embe* traf* fraud* scam* hack* ille* "
                "ivory skim*"),
)

# Rules that name a harm by its means rather than by a verb and a victim.
RULES += (
    # ---- violence
    _rule("undetectable-poison", "violence", 0.85,
          r"\b(?:poison|toxin|drug|substance)s?\b.{0,50}\b(?:(?:doesn'?t|won'?t|wouldn'?t|not|never)\W+(?:show\W+up|be\W+detected)|"
          r"undetectable|untraceable|can'?t\W+be\W+(?:detected|traced)|in\W+an\W+autopsy|on\W+a\W+tox\w*)|"
          r"\b(?:undetectable|untraceable)\W+(?:poison|toxin)", strong=True, needs="poison toxin drug drugs subs* unde* untr*"),
    _rule("vehicle-ramming", "violence", 0.85,
          r"\b(?:run|drive|ram|plough|plow|crash|steer|mow)\w*\W+(?:my|a|the|our)\W+(?:car|truck|van|lorry|vehicle|suv)\W+"
          r"(?:into|through)\W+(?:the\W+|a\W+)?(?:\w+\W+)?(?:crowd|people|pedestrians|protesters|market|parade|festival|"
          r"marchers|shoppers|students)|\b(?:attack|hit|ram)\w*\W+(?:\w+\W+){0,3}?(?:parade|crowd|protest|march)\w*\W+"
          r"with\W+(?:my|a|the)\W+(?:car|truck|van|lorry)", strong=True, needs="run drive ram plou* plow crash steer mow attack hit"),
    _rule("weapon-to-place", "violence", 0.8,
          r"\b(?:bring|take|carry|sneak)\w*\W+(?:a|my|his|her|\w+'?s?)\W+(?:\w+'?s?\W+)?(?:gun|rifle|pistol|shotgun|weapon|"
          r"knife|machete|bomb)\W+(?:to|into)\W+(?:work|school|class|the\W+office|church|the\W+mall|campus|the\W+party)",
          strong=True, needs="bring brin* take taking carr* sneak"),
    _rule("violent-depiction", "violence", 0.5,
          r"\bas\W+(?:bloody|gory|brutal|violent|graphic|gruesome|painful)\W+as\W+possible\b|"
          r"\b(?:scene|story|chapter|description)\W+(?:of|where|in\W+which)\W+" + _fill(3) + r"(?:torturing|killing|murdering|"
          r"mutilating|dismembering|stabbing|beating|strangling)\W+" + _fill(2) + PERSON,
          needs="bloody gory brutal violent graphic grue* painful scene story chap* desc*"),
    _rule("violence-means", "violence", 0.85,
          r"\b(?:hit|punch|kick|beat|choke|strike)\w*\W+(?:someone|him|her|them|a\W+\w+)\W+so\W+hard\W+(?:they|he|she)\W+(?:never|don'?t|"
          r"won'?t)|\bbooby\W*trap\w*\b.{0,40}\b(?:kill|hurt|maim|injure)|\b(?:drug|spike)\w*\W+(?:my|her|his|a|the)\W+(?:\w+'?s?\W+)?"
          r"(?:drink|date)\w*\b.{0,40}\b(?:can'?t|couldn'?t|won'?t)\W+(?:fight|resist|remember|say\W+no)|\bput\W+a\W+bullet\W+"
          r"(?:through|in|into)\W+(?:my|his|her|their|the|someone'?s)|\bguns?\W+down\W+(?:his|her|their|my|the)\W+(?:classmates|"
          r"coworkers|students|family|teachers)|\bpoison\W+(?:the|my|a|his|her|their)\W+(?:\w+\W+)?(?:dog|cat|horse|neighbou?r)",
          strong=True, needs="hit punch kick beat choke stri* booby boob* drug spike put gun guns pois*"),
    _rule("next-victim", "violence", 0.3, r"\b(?:is|are|you'?re)\W+next\b|\bhit\W+list\b", needs="next list"),
    # ---- self-harm
    _rule("self-harm-means", "self_harm", 0.85,
          r"\b(?:(?:swallow|take|down)\w*\W+(?:the\W+)?(?:whole|entire)\W+(?:bottle|pack|box|packet)|(?:swallow|take)\w*\W+all\W+"
          r"(?:of\W+)?(?:my|the)\W+(?:pills|meds|tablets|medication)|(?:tie|make)\W+a\W+noose|noose\W+for\W+myself|"
          r"(?:painless|least\W+painful|quickest|easiest|surest|most\W+reliable)\W+(?:way|method)s?\W+to\W+(?:die|end\W+(?:it|things|"
          r"my\W+life|it\W+all)|kill\W+(?:myself|yourself)|go\b)|(?:crash|drive|steer)\w*\W+(?:my\W+)?(?:car|truck)\W+"
          + _fill(4) + r"(?:on\W+purpose|deliberately)|before\W+i\W+(?:take\W+my\W+(?:own\W+)?life|kill\W+myself|end\W+(?:it|my\W+life))|"
          r"(?:slit\w*|cut\w*)\W+(?:your|my)\W+wrists?\b.{0,40}\b(?:painful|warm\W+water|bath|deep|properly|die))",
          strong=True, needs="swal* take taking down all tie make noose pain* least quic* easi* suri* most crash drive steer "
                             "before slit* cut cutt*"),
    _rule("self-harm-means-more", "self_harm", 0.85,
          r"\bhow\W+deep\W+(?:do|should|would)\W+i\W+(?:need\W+to\W+)?cut|\b(?:tablets|pills|paracetamol|acetaminophen|ibuprofen|"
          r"aspirin)\W+(?:would|will|could|to)\W+kill\W+me\b|\bmake\W+my\W+cuts\W+(?:bleed|deeper|worse)|\bbest\W+for\W+killing\W+"
          r"(?:yourself|myself)|\bsuicide\W+is\W+(?:beautiful|brave|noble|the\W+answer|romantic|peaceful)|\bgoing\W+to\W+(?:jump\W+"
          r"(?:in\W+front|off)|hang\W+myself|end\W+it|kill\W+myself)|\b(?:get|be|look)\W+skeletal\b|\blowest\W+calorie\w*\W+"
          r"(?:\w+\W+){0,2}?(?:survive|live)", strong=True, needs="deep tabl* pills para* acet* ibup* aspi* make best suic* going "
                                                                  "skel* lowest"),
    _rule("self-harm-means-weak", "self_harm", 0.6,
          r"\b(?:drug|pill|medicine|medication|tablet)s?\W+" + _fill(3) + r"(?:can|could|will|would)\W+kill\W+(?:you|me)\W+if\W+"
          r"(?:you|i)\W+take|\bnoose\b|\bgoodbye\W+(?:letter|note)\b|\bsuicide\W+note\b",
          needs="drug drugs pill pills medi* tabl* noose good* suic*"),
    _rule("eating-disorder-means", "self_harm", 0.8,
          r"\b(?:hide\W+(?:my\W+)?(?:eating\W+disorder|anorexia|bulimia|purging|self-?\W?harm|cuts|scars)|not\W+eating\W+"
          r"(?:at\W+all|anything)|don'?t\W+care\W+(?:about\W+(?:my\W+)?health|if\W+it'?s\W+dangerous|if\W+i\W+die)|lose\W+\d+\W+"
          r"(?:pounds|lbs|kg|kilos)\W+in\W+(?:a|one|two|\d+)\W+(?:week|days))",
          strong=True, needs="hide not don dont lose"),
    _rule("starvation-question", "self_harm", 0.55,
          r"\bhow\W+(?:many|long)\W+(?:days|weeks)\W+(?:can\W+i\W+go\W+)?without\W+(?:food|eating)|\bi\W+want\W+to\W+get\W+there\b",
          needs="many long want"),
    # ---- harassment
    _rule("stalking", "harassment", 0.8,
          r"\b(?:find|figure\W+out|locate|track\W+down|work\W+out)\W+(?:out\W+)?where\W+" + _fill(2) + r"(?:lives|works|is\W+staying|"
          r"sleeps|goes)\b.{0,60}\b(?:so\W+i\W+can|wait|show\W+up|visit|confront|surprise)|\bwait\w*\W+outside\W+(?:her|his|their)\W+"
          r"(?:house|home|flat|work|school)", strong=True, needs="find figure loca* track work wait"),
    _rule("impersonation", "harassment", 0.75,
          r"\bfake\W+(?:dating\W+)?(?:profile|account|page)\W+(?:of|for|pretending\W+to\W+be|impersonating|as)\W+(?:my|his|her|\w+)",
          strong=True, needs="fake"),
    _rule("harass-make-feel", "harassment", 0.8,
          r"\bmak\w+\W+(?:him|her|them|this\W+\w+|my\W+\w+|someone|\w+)\W+feel\W+(?:so\W+|like\W+(?:a|the)\W+)?(?:\w+\W+){0,2}?"
          r"(?:stupid|ugly|worthless|unwelcome|small|pathetic|useless|unloved|fat|disgusting|failure|garbage|idiot|alone|hated)\b|"
          r"\b(?:mean|cruel|nasty|hurtful)\W+things\W+to\W+(?:say|tell|text|write)|\bnickname\W+for\W+(?:the|a|my)\W+(?:\w+\W+)?"
          r"(?:fat|ugly|weird|short|skinny|poor|stupid|fattest|ugliest)\b|\bprank\W+call\w*\W+(?:my|her|his)\W+\w+\W+(?:at\W+\d|every)|"
          r"\b(?:text|call|message|email)\w*\W+(?:her|him|them)\W+(?:a\W+hundred|\d+|fifty|dozens\W+of)\W+times|"
          r"\bdig\W+up\W+dirt\W+on\b|\bi\W+know\W+your\W+(?:address|school|workplace|schedule)|\bdon'?t\W+think\W+you\W+can\W+hide|"
          r"\b[a-z]+\W+is\W+(?:a|an)\W+(?:\w+\W+)?(?:slut|whore|skank)\b|\bfake\W+(?:\w+\W+)?review\W+(?:saying|claiming|that\W+says)\W+"
          r"(?:the\W+owner|she|he|they)", strong=True, needs="make makes making mean cruel nasty hurt* nick* prank text call mess* "
                                                              "email dig know don dont slut whore skank fake"),
    _rule("insult-exclamation", "harassment", 0.75,
          r"\bwhat\W+(?:a|an)\W+" + _fill(2) + INSULT_NOUN + r"\W+(?:you|s?he)\W*(?:are|is|'re|'s)\b|\bmake\w*\W+(?:him|her|them|"
          r"someone|my\W+\w+(?:\W+\w+)?)\W+cry\b|\b(?:brutal|savage|devastating|cutting|nastiest|meanest|cruelest)\W+"
          r"(?:insults|burns|comebacks|roasts)\b", strong=True, needs=_INSULT_NEEDS + " make makes making brutal savage deva* "
                                                                     "cutting nast* mean* crue*"),
    # ---- hate
    _rule("hate-claims", "hate", 0.8,
          r"\b" + GROUP + r"\W+(?:can\W+never|can'?t|cannot|should\s*n[o']t|shouldn'?t|must\s*n[o']t|don'?t\W+deserve\W+to)\W+(?:ever\W+)?"
          r"(?:be\W+trusted|be\W+allowed\W+to|vote|have\W+rights|marry|adopt|teach|work|live\W+here|hold\W+office)|"
          r"\b" + GROUP + r"\W+(?:\w+\W+)?belong\W+in\W+(?:cages|zoos|chains|camps|the\W+kitchen|prison|gas\W+chambers)|"
          r"\b" + GROUP + r"\W+(?:are\W+)?(?:poison\w*|polluting|infesting|destroying|ruining)\W+(?:our|the)\W+(?:blood|race|country|"
          r"nation|culture|gene\W+pool)|\bwhy\W+are\W+(?:all\W+)?" + GROUP + r"\W+so\W+" + _fill(1) + r"(?:dirty|stupid|lazy|ugly|"
          r"violent|greedy|smelly|dumb|evil|filthy|disgusting)|\bkick\w*\W+(?:every|all|the)\W+(?:\w+\W+)?" + GROUP + r"\W+out",
          strong=True, needs=_GROUP_NEEDS),
    _rule("hate-exclusion", "hate", 0.75,
          r"\b(?:don'?t|do\W+not|never|won'?t)\W+(?:want|allow|let|serve|hire|rent\W+to|accept)\W+(?:any\W+)?" + GROUP
          + r"\W+(?:in|into|near|at|to)\b|\b(?:keep|kept)\W+(?:\w+\W+){0,2}?" + GROUP + r"\W+(?:away|out)\b|\bthe\W+only\W+good\W+"
          r"(\w+)\W+is\W+a\W+dead\W+(?:one|\1)", strong=True, needs="don dont not never won wont keep kept only"),
    # ---- sexual
    _rule("sexual-acts", "sexual", 0.6,
          r"\b(?:hand|fingers)\W+(?:under|up|inside|into)\W+(?:her|his)\W+(?:skirt|dress|shirt|panties|underwear|bra|pants)|"
          r"\b(?:do|did|doing)\W+to\W+(?:me|my\W+body|her|him|you)\W+in\W+bed\b|\bundress\w*\W+(?:me|you|her|him)\b",
          needs="hand fingers do did doing undr*"),
    _rule("sexual-more", "sexual", 0.8,
          r"\b(?:boobs|breasts|tits)\b.{0,40}\b(?:let\W+me|do\W+with|touch|squeeze|suck)|\bgo(?:es|ing)?\W+down\W+on\W+(?:her|him|me|you)\b|"
          r"\b(?:dirty|steamy|naughty|filthy)\W+(?:\w+\W+)?stor(?:y|ies)\W+(?:about|where|with)\W+(?:\w+\W+){0,3}?(?:step\w+|boss|"
          r"secretary|nurse|teacher|neighbou?r|milf|babysitter|maid)|\bsteamy\b.{0,80}\bdescribe\W+everything",
          strong=True, needs="boobs breasts tits go goes going dirty steamy naughty filthy"),
    _rule("explicit-cue", "sexual", 0.3, r"\b(?:be|make\W+it|keep\W+it)\W+(?:graphic|explicit|dirty|steamy|nsfw)\b",
          needs="graphic expl* dirty steamy nsfw"),
    # ---- illegal
    _rule("deception-for-gain", "illegal", 0.8,
          r"\btrick\w*\W+(?:people|users|customers|someone|victims|them|him|her|old\W+people|the\W+elderly)\W+into\W+(?:giving|sending|"
          r"entering|revealing|paying|handing|clicking)|\bfake\W+login\W+pages?|\bharvest\w*\W+(?:\w+\W+)?(?:accounts|credentials|"
          r"passwords|logins)|\bcredential\W+harvest\w*", strong=True, needs="trick* fake harv* cred*"),
    _rule("unauthorised-access", "illegal", 0.8,
          r"\b(?:get|break|log|hack|sneak)\w*\W+(?:in|into|onto)\W+" + _fill(3) + r"(?:wi-?fi|network|account|email|phone|computer|"
          r"router|server|laptop)\W+without\W+(?:the|their|his|her|a|any)\W+(?:password|permission|consent|knowing)|"
          r"(?:" + HOW_TO + r"|" + INTENT + r")\W*" + _work(3) + r"hack\w*(?!\W+together|\W+(?:my|your)\W+(?:productivity|sleep|"
          r"routine|morning|workflow|life))\W+(?:into\W+)?(?:a|an|the|my\W+\w+'?s?|someone'?s?|\w+'?s)\W+",
          strong=True, needs="get break log hack* sneak"),
    _rule("tax-evasion", "illegal", 0.8,
          r"\bhide\W+(?:my\W+|our\W+)?(?:income|money|earnings|assets|cash|profits)\W+from\W+(?:the\W+)?(?:tax|irs|hmrc|government|"
          r"taxman|authorities)", strong=True, needs="hide"),
    _rule("drugs-to-minors", "illegal", 0.8,
          r"(?:\b" + DRUG + r"\b.{0,40}\b(?:sell|deal|push|supply)\w*|\b(?:sell|deal|push|supply)\w*\W+" + _fill(3) + DRUG + r")\W+"
          + _fill(2) + r"(?:at|to|in|outside)\W+(?:the\W+)?(?:school|students|kids|minors|classmates|teenagers|college)\b",
          strong=True, needs=_DRUG_NEEDS),
    _rule("illegal-more", "illegal", 0.8,
          r"\b(?:buy|get|order)\W+(?:a\W+)?(?:gun|firearm|rifle|pistol)\W+(?:with\W+)?(?:no|without)\W+(?:paperwork|papers|license|licence|"
          r"serial|questions)|\bfake\W+(?:online\W+)?(?:shop|store|webshop)\b.{0,60}\b(?:ships\W+nothing|never\W+(?:ships|delivers)|"
          r"takes?\W+(?:the\W+)?(?:money|payments))|\bso\W+i\W+can\W+steal\b|\bsell\W+(?:my|his|her|their)\W+(?:\w+\W+)?"
          r"(?:meds|medication|pills|prescription|adderall|ritalin|xanax)\b", strong=True, needs="buy get order fake so sell"),
    _rule("prohibited-possession", "illegal", 0.8,
          r"\b(?:gun|firearm|rifle|pistol|weapon)s?\b.{0,40}\b(?:felony|felon|criminal\W+record|restraining\W+order|"
          r"convicted|prohibited|banned\W+from\W+owning)", strong=True, needs="gun guns fire* rifle pistol weap*"),
)

# --- benign contexts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenignContext:
    name: str
    categories: tuple[str, ...]
    factor: float  # multiplies weak rules and the classifier for those categories
    pattern: re.Pattern[str]


def _context(name: str, categories: str, factor: float, regex: str) -> BenignContext:
    return BenignContext(name, tuple(categories.split()), factor, re.compile(regex))


_ALL = "hate harassment violence sexual self_harm illegal"

BENIGN_CONTEXTS: tuple[BenignContext, ...] = (
    _context("defensive", "illegal violence harassment sexual", 0.35,
             r"\b(?:how\W+(?:can|do|should|could)\W+(?:i|we|you|one|parents|banks|police|schools|companies|teachers|a\W+\w+)\W+"
             r"(?:tell|spot|detect|recogni[sz]e|identify|prevent|protect|avoid|stop|report|defend|secure|mitigate|reduce|block|"
             r"lock\W+down|warn|deal\W+with|respond|handle|cope|support|fight|combat|catch|investigate)|protect\w*\W+(?:my|our|your|"
             r"against|from|kids|children)|prevent\w*|detect\w*|defen[cs]\w*|mitigat\w+|awareness|warning\W+signs|signs\W+(?:that|of)|"
             r"report(?:ing)?\W+(?:a|an|the|it|my|racist|online|suspicious|them)|what\W+should\W+i\W+do\W+if|recogni[sz]e|"
             r"spot\W+(?:a|an|the)|so\W+i\W+can\W+(?:detect|protect|spot|avoid)|penetration\W+test\w*|responsibl\w+\W+disclos\w+|"
             r"legal\w*\W+(?:ways?|options)|is\W+it\W+legal|is\W+it\W+illegal|penalty|restraining\W+order|my\W+own\b|"
             r"talk\W+to\W+(?:my|our|the)\W+(?:kids|children|son|daughter|teens?|students)\W+about)"),
    _context("education-news", _ALL, 0.4,
             r"\b(?:history\W+of|historical|what\W+(?:is|was|are|were|caused|happened|does|did)|why\W+(?:did|do|does|is|are|was|were)|"
             r"explain\w*\W+(?:the|what|why|how\W+(?!to\b))|summar(?:y|i[sz]e)|synopsis|plot\W+of|book\W+report|novel|the\W+movie|the\W+film|"
             r"tv\W+series|episode|in\W+(?:the\W+)?(?:book|novel|play)|headline|news\W+(?:brief|article|report)|reported|police\W+"
             r"(?:arrested|responded|are|said)|sentenced|verdict|jury|trial|extradited|convicted|charges|court|statistics|research|"
             r"according\W+to|fact-?check|lesson\W+plan|essay\W+(?:on|about)|for\W+(?:my|a)\W+(?:essay|class|paper|thesis|research)|"
             r"theme\W+of|symbolism|who\W+(?:is|was|dies)|investigators|suspects?|the\W+victim\w*\W+(?:was|were))"),
    _context("medical-support", "self_harm sexual violence", 0.3,
             r"\b(?:helpline|hotline|lifeline|crisis\W+(?:line|text)|samaritans|therap\w+|counsel\w+|psychiatr\w+|doctor|nurse|"
             r"support\W+(?:group|my|a|her|him)|recovery|recovering|clean\W+for|prevention|how\W+(?:can|do|should)\W+i\W+(?:help|talk\W+to|"
             r"support|bring)|my\W+(?:friend|son|daughter|sister|brother|child|coworker|partner|student)\W+(?:told|has|is|keeps|wants|might)|"
             r"symptoms|side\W+effects|treat(?:ed|ment)?|diagnos\w+|dose\W+for\W+an?\W+adult|daily\W+dose|vaccin\w+|contracepti\w+|"
             r"condoms?|puberty|sex\W+(?:education|ed)\b|sexual\W+(?:health|reproduction|orientation|harassment\W+training)|"
             r"sexually\W+transmitted|stis?\b|hiv|hpv|pregnan\w+|reproductive|menstrua\w+|fertility|ivf|consent|"
             r"erectile|gynecolog\w+|screening|self-?exam|used\W+to\W+self\W*-?\W*harm|in\W+recovery|supportive)"),
    _context("banter", "violence harassment", 0.3,
             r"(?:\b(?:lol|lmao|rofl|haha\w*|jk|just\W+kidding|kidding)\b|[\U0001F602\U0001F923\U0001F606])"),
    _context("fiction-summary", "violence sexual self_harm illegal", 0.45,
             r"\b(?:summar\w+|synopsis|plot|book\W+report|character'?s?|villain'?s?|protagonist|in\W+(?:the\W+)?(?:novel|book|film|movie|"
             r"series|play|game|episode)|campfire\W+story|detective\W+story|suitable\W+for|children'?s|for\W+kids)\b"),
    _context("games", "violence", 0.3,
             r"\b(?:boss|level|dungeon|minecraft|elden\W+ring|fortnite|valorant|call\W+of\W+duty|raid|quest|npc|respawn|loadout|"
             r"player|in-?game|impostors?|among\W+us|video\W+game|ender\W+dragon|hollow\W+knight|sniping)\b"),
    _context("software", "violence illegal", 0.3,
             r"\b(?:process(?:es)?|pid|thread|container|pod|kubernetes|docker|tmux|session|job|daemon|script|cron|server|"
             r"linux|bash|shell|python|git|rebase|database|query|sql\W+query|api|curl|segfault|segmentation\W+fault|gdb|compiler|"
             r"node_modules|makefile|build|deploy\w*|exception|terminal|command\W+line|port\W+\d+|sigkill|sigterm|code\W?base|"
             r"prototype|function|regex|repo|branch|commit|zombie|garbage\W+collector)\b"),
)
