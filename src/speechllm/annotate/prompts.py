"""The annotation prompts: instructions, few-shot examples and the prompt layouts.

Answers follow the speech model's answer formats (`speechllm.model.prompts`) and are read by the
same parsers:

- `ner`: the sentence copied word for word with each entity wrapped as `[TAG phrase]`, TAG one of
  SLUE's 7 tags, e.g. `the [ORG council] met in [PLACE luxembourg] on [WHEN tuesday]`.
- `sa`: one word, `Negative`, `Neutral` or `Positive`.

Prompts are few-shot: the examples in `NER_EXAMPLES` and `SA_EXAMPLES` were written for this
module in SLUE-VoxPopuli's style (lower case, numbers spelled out, parliamentary speech) and
following SLUE's labelling conventions (`eu` and `europe` are PLACE, `european` alone NORP,
`first` / `one` QUANT, `today` WHEN, a leading `the` outside the entity); none is taken from
SLUE's dev set, which is the test set. An instruct model (a tokenizer with a chat template) gets
them as earlier user / assistant turns; a base model (e.g. `gemma3-270m`) gets a plain
`Sentence: ... / Answer: ...` completion prompt (`prompt_parts`). The instruction and examples
(the prompt's prefix, the same for every text) are run through the model once; their keys and
values are reused for every batch (`annotator.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ANNOTATION_PROMPT_VERSION = 1
"""Version of the prompts and few-shot examples below; bump when they change (it is part of the
cache key, so a new version never reuses old answers)."""

ANNOTATION_TASKS: tuple[str, ...] = ("ner", "sa")

PromptStyle = Literal["auto", "chat", "plain"]

TAG_GUIDE = (
    "PLACE (countries, cities, regions, the eu, europe), "
    "QUANT (numbers, amounts, percentages, ordinals such as first), "
    "ORG (organisations, institutions, companies, parliament, council), "
    "WHEN (dates, years, days, periods such as today or next year), "
    "NORP (nationalities, religious or political groups, european as an adjective), "
    "PERSON (names of people), "
    "LAW (laws, treaties, directives, regulations, agreements)"
)


ANNOTATION_INSTRUCTIONS: dict[str, str] = {
    "ner": (
        "Mark the named entities in the sentence. Copy the sentence word for word and wrap each "
        "named entity as [TAG phrase], with TAG one of: " + TAG_GUIDE + ". Leave other words "
        "unmarked. A sentence without entities is copied unchanged."
    ),
    "sa": ("Judge the sentiment of the text. Answer with one word: Negative, Neutral or Positive."),
}

STRICT_SUFFIX: dict[str, str] = {
    "ner": (
        " Important: repeat every word of the sentence exactly, in the same order, adding only "
        "the brackets and tags; do not add, drop or change any word."
    ),
    "sa": " Important: answer with exactly one of the words Negative, Neutral or Positive.",
}

# Written for this module (not from SLUE dev); they follow SLUE-VoxPopuli's conventions.
NER_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "the eu must stand with ukraine today",
        "the [PLACE eu] must stand with [PLACE ukraine] [WHEN today]",
    ),
    (
        "first i would like to thank the council and the rapporteur mr lindqvist for their work",
        "[QUANT first] i would like to thank the [ORG council] and the rapporteur mr "
        "[PERSON lindqvist] for their work",
    ),
    (
        "thank you madam president i fully support this report",
        "thank you madam president i fully support this report",
    ),
    (
        "since two thousand and ten more than three million syrian refugees have arrived in turkey",
        "since [WHEN two thousand and ten] more than [QUANT three million] [NORP syrian] refugees "
        "have arrived in [PLACE turkey]",
    ),
    (
        "every european government must respect the paris agreement and the asylum directive",
        "every [NORP european] government must respect the [LAW paris agreement] and the "
        "[LAW asylum directive]",
    ),
    (
        "last week parliament asked the european investment bank for twenty billion euro",
        "[WHEN last week] [ORG parliament] asked the [ORG european investment bank] for "
        "[QUANT twenty billion euro]",
    ),
)

# Written for this module; short texts of the kinds annotated (reviews, tweets, speeches).
SA_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("I loved every minute of it, the acting is superb.", "Positive"),
    ("The battery died after two days and support never answered.", "Negative"),
    ("The meeting is scheduled for Thursday at the main office.", "Neutral"),
    ("this is the worst decision the council has taken in years", "Negative"),
    ("what a wonderful result for our farmers, well done everyone", "Positive"),
    ("the report covers the period from january to june", "Neutral"),
)


def prompt_parts(
    tokenizer: PreTrainedTokenizerBase,
    style: Literal["chat", "plain"],
    task: str,
    text: str,
    *,
    strict: bool = False,
) -> tuple[str, str]:
    """The prompt for one item as (prefix, suffix): the prefix (instruction and few-shot
    examples, special tokens included, e.g. BOS) is the same for every text of a task, so
    its keys and values can be computed once; the suffix holds the text. `strict`: the retry's
    instruction (`STRICT_SUFFIX` added)."""
    instruction = ANNOTATION_INSTRUCTIONS[task] + (STRICT_SUFFIX[task] if strict else "")
    examples = NER_EXAMPLES if task == "ner" else SA_EXAMPLES
    label = "Sentence" if task == "ner" else "Text"
    if style == "chat":
        turns = [{"role": "system", "content": instruction}]
        for x, y in examples:
            turns += [
                {"role": "user", "content": f"{label}: {x}"},
                {"role": "assistant", "content": y},
            ]
        marker = "\x00TEXT\x00"
        turns.append({"role": "user", "content": f"{label}: {marker}"})
        full = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        # Split before the last user turn: the template's text for it starts after the
        # last assistant answer's end.
        head, _, tail = full.partition(marker)
        cut = head.rindex(examples[-1][1]) + len(examples[-1][1])
        end = head.find("\n", cut)
        cut = end + 1 if end >= 0 else cut
        return head[:cut], head[cut:] + text + tail
    shots = "".join(f"{label}: {x}\nAnswer: {y}\n\n" for x, y in examples)
    bos = tokenizer.bos_token or ""
    return f"{bos}{instruction}\n\n{shots}", f"{label}: {text}\nAnswer:"
