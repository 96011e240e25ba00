"""What the LLM reads for one example, in its tokenizer's chat layout:

    [prompt prefix tokens] [speech embeddings (T')] [prompt suffix tokens] [answer tokens] [stop]

`PromptLayout` holds one tokenizer's prompt tokens per task (`prompts.INSTRUCTIONS`) and its stop
token, assembles padded input rows with the answer-only labels, and turns generated ids back into
answer texts.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from speechllm.errors import ModelSourceError
from speechllm.hub.llm import chat_stop_token
from speechllm.model.prompts import INSTRUCTIONS, TASKS

SPEECH_PLACEHOLDER = "<|speech|>"
"""Where the speech goes in the rendered chat template (split there, never tokenized)."""
SYSTEM_PROMPT = "You understand speech."
"""A short system turn: it replaces long default ones (SmolLM2 adds ~20 tokens otherwise)."""


class PromptLayout:
    """One tokenizer's framing of (speech, task) examples."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.stop_id, (prefix, suffix) = prompt_templates(tokenizer)
        self.prompt_ids: dict[str, tuple[list[int], list[int]]] = {
            task: self._encode(prefix, suffix.replace("{instruction}", INSTRUCTIONS[task]))
            for task in TASKS
        }
        """Per task: (token ids before the speech, token ids after it)."""
        stops = {self.stop_id}
        if tokenizer.eos_token_id is not None:
            stops.add(tokenizer.eos_token_id)
        self.stop_ids: list[int] = sorted(stops)
        """Ids that end an answer: the layout's stop token and the tokenizer's EOS."""
        self.pad_id: int = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_id
        )

    def _encode(self, *texts: str) -> tuple[list[int], list[int]]:
        pre, post = (self.tokenizer(t, add_special_tokens=False).input_ids for t in texts)
        return pre, post

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer followed by the stop token."""
        return [*self.tokenizer(answer, add_special_tokens=False).input_ids, self.stop_id]

    def assemble(
        self,
        embed: nn.Embedding,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        tasks: list[str],
        answers: list[str] | None,
        left_pad: bool,
        unscored: list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input rows from what the LLM reads for the speech (B, N, D), lengths (B,): (inputs_embeds
        (B, L, D), attention_mask (B, L), labels (B, L): the answer tokens, -100 elsewhere, and
        -100 on the tokens of `unscored[i]`, a leading part of answer i the model reads but is
        not taught). Left padding for generation, right padding for training."""
        device = speech.device
        rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, task in enumerate(tasks):
            if task not in self.prompt_ids:
                raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
            pre, post = self.prompt_ids[task]
            ans = self.answer_ids(answers[i]) if answers is not None else []
            n = int(speech_lengths[i])
            pre_t = torch.tensor(pre, device=device, dtype=torch.long)
            tail_t = torch.tensor(post + ans, device=device, dtype=torch.long)
            vecs = torch.cat([embed(pre_t), speech[i, :n].to(embed.weight.dtype), embed(tail_t)])
            labels = torch.full((vecs.shape[0],), -100, dtype=torch.long, device=device)
            if ans:
                labels[-len(ans) :] = torch.tensor(ans, device=device)
                if unscored and unscored[i]:
                    labels[-len(ans) : -len(ans) + self._prefix_length(ans, unscored[i])] = -100
            rows.append((vecs, labels))
        length = max(v.shape[0] for v, _ in rows)
        d = rows[0][0].shape[1]
        inputs = torch.zeros(len(rows), length, d, device=device, dtype=rows[0][0].dtype)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        labels = torch.full((len(rows), length), -100, dtype=torch.long, device=device)
        for i, (v, lab) in enumerate(rows):
            sl = slice(length - v.shape[0], length) if left_pad else slice(0, v.shape[0])
            inputs[i, sl] = v
            mask[i, sl] = 1
            labels[i, sl] = lab
        return inputs, mask, labels

    def scored_tokens(self, answer: str, unscored: str = "") -> int:
        """How many label positions `assemble` gives an answer: its tokens and the stop token,
        less those of its unscored leading part."""
        ids = self.answer_ids(answer)
        return len(ids) - (self._prefix_length(ids, unscored) if unscored else 0)

    def _prefix_length(self, answer_ids: list[int], prefix: str) -> int:
        """How many of `answer_ids` spell `prefix`. The answer is tokenized whole, so this checks
        the prefix's own tokens open it (true of a word before a space in byte-level BPE)."""
        ids = self.tokenizer(prefix, add_special_tokens=False).input_ids
        if answer_ids[: len(ids)] != ids:
            raise ValueError(f"the answer does not open with the tokens of {prefix!r}")
        return len(ids)

    def answers(self, generated: list[list[int]]) -> list[str]:
        """Answer texts of generated id rows: each cut at its first stop id."""
        stops = set(self.stop_ids)
        texts = []
        for row in generated:
            ids = []
            for t in row:
                if t in stops:
                    break
                ids.append(t)
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts


def prompt_templates(tokenizer: PreTrainedTokenizerBase) -> tuple[int, tuple[str, str]]:
    """(stop token id, (prefix, suffix-with-{instruction})) for this tokenizer.

    With a chat template the user turn is `<speech>\\n{instruction}` and the stop token is the one
    the template puts after an assistant answer (e.g. `<|im_end|>`); without one, a plain
    `Speech: ... Instruction: ... Answer:` layout ending with the EOS token.
    """
    if getattr(tokenizer, "chat_template", None):
        marker = "\x00INSTR\x00"
        user = [{"role": "user", "content": f"{SPEECH_PLACEHOLDER}\n{marker}"}]
        # Templates that refuse a system role get none.
        system = [{"role": "system", "content": SYSTEM_PROMPT}]
        try:
            text = tokenizer.apply_chat_template(
                system + user, add_generation_prompt=True, tokenize=False
            )
            user = system + user
        except Exception:  # jinja raises its own TemplateError types per template
            text = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        prefix, _, suffix = text.partition(SPEECH_PLACEHOLDER)
        suffix = suffix.replace(marker, "{instruction}")
        stop = chat_stop_token(tokenizer, user)
        if stop is not None:
            return stop, (prefix, suffix)
    if tokenizer.eos_token_id is None:
        raise ModelSourceError("the LLM's tokenizer has neither a chat template nor an EOS token")
    bos = tokenizer.bos_token or ""
    return tokenizer.eos_token_id, (f"{bos}Speech:", "\nInstruction: {instruction}\nAnswer:\n")
