"""The label sets of the three tasks: SLUE's 7 combined entity tags and 3 sentiment classes."""

# SLUE-VoxPopuli scores named entities on 7 combined tags (slue-toolkit's combined label set).
SLUE_TAGS: tuple[str, ...] = ("PLACE", "QUANT", "ORG", "WHEN", "NORP", "PERSON", "LAW")

# The 18 OntoNotes tags of the raw SLUE labels -> combined tag; None means the tag is dropped
# from reference and hypothesis alike (as SLUE does for FAC, EVENT, WORK_OF_ART, PRODUCT, LANGUAGE).
ONTONOTES_TO_SLUE: dict[str, str | None] = {
    "DATE": "WHEN",
    "TIME": "WHEN",
    "CARDINAL": "QUANT",
    "ORDINAL": "QUANT",
    "QUANTITY": "QUANT",
    "MONEY": "QUANT",
    "PERCENT": "QUANT",
    "GPE": "PLACE",
    "LOC": "PLACE",
    "NORP": "NORP",
    "ORG": "ORG",
    "LAW": "LAW",
    "PERSON": "PERSON",
    "FAC": None,
    "EVENT": None,
    "WORK_OF_ART": None,
    "PRODUCT": None,
    "LANGUAGE": None,
}

# SLUE-VoxCeleb sentiment classes, in the order the classifier heads use.
SENTIMENTS: tuple[str, ...] = ("Negative", "Neutral", "Positive")
