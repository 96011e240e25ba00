"""The server's settings (`ServerConfig`, every field a `speechllm serve` option) and the shapes
of its HTTP responses (the OpenAPI schema at `/docs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired

from pydantic import BaseModel
from typing_extensions import TypedDict

from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.errors import ConfigError


@dataclass
class ServerConfig:
    """Limits and batching of the inference server (every field is a `speechllm serve` option)."""

    max_upload_mb: float = 25.0
    """Largest accepted upload in MiB (2**20 bytes); a larger one gets 413."""

    max_minutes: float = 60.0
    """Longest accepted recording in minutes (as `speechllm infer --max-minutes`); a longer one
    gets 413, found from the file's header before it is resampled. The upload limit applies too:
    25 MiB hold about 13 minutes of 16 kHz 16-bit mono WAV, more of FLAC or OGG."""

    max_seconds: float = WHISPER_WINDOW_SECONDS
    """Longest clip decoded whole, in seconds, between 1 and 30 (the Whisper encoder's window): a
    clip up to this long is one piece, as it always was; a longer one is split at its pauses into
    pieces of at most this long."""

    max_queue: int = 64
    """Rows (one clip or piece, one task) that may wait for the model, not counting the batch
    being computed; a request that would take the queue past this gets 429, unless nothing waits
    (a recording of more pieces than this is taken only then). 0 refuses every request
    (maintenance)."""

    max_batch: int = 8
    """Most rows answered by one model call: short requests (one row each), or the pieces of a
    long recording (its remaining pieces go to the next calls)."""

    batch_wait_ms: float = 10.0
    """How long the worker waits for more requests after the first of a batch arrives, in ms."""

    request_timeout_s: float = 60.0
    """Longest a request waits for its answer (queue + model) before it gets 504, per piece: a
    long recording split into n pieces is given n times as long (as if its pieces were sent one
    after the other). A request that the service-time estimate says would wait longer is refused
    at once with 429."""

    prior_seconds_per_row: float = 2.0
    """Model seconds per row (one (request, task) answer) assumed until the first batch has been
    measured (the order of the shipped 135M model on one CPU core); the first measurement replaces
    it. Too low a prior lets a cold burst in that then times out (504); too high refuses more of
    it (429) until the first batch is measured."""

    estimate_weight: float = 0.3
    """Weight of the newest batch in the running average of seconds per row (1 = only the last
    batch counts)."""

    timeout_reserve: float = 0.2
    """Fraction of `request_timeout_s` that admission control keeps in reserve: a request is
    accepted only if the estimate says it, and every queued request it would delay, is answered
    this much before its deadline. The reserve covers what the model-time estimate does not see
    (decoding the upload, a busy CPU's jitter, a batch slower than the average); 0 plans up to the
    deadline itself (more requests accepted, some then 504)."""

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        if not 1 <= self.max_seconds <= WHISPER_WINDOW_SECONDS:
            raise ConfigError(
                f"max_seconds must be in [1, {WHISPER_WINDOW_SECONDS:g}] (the encoder's window), "
                f"got {self.max_seconds}"
            )
        if self.max_queue < 0:
            raise ConfigError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"request_timeout_s must be positive, got {self.request_timeout_s}")
        if not self.prior_seconds_per_row > 0:
            raise ConfigError(
                f"prior_seconds_per_row must be positive, got {self.prior_seconds_per_row}"
            )
        if not 0 < self.estimate_weight <= 1:
            raise ConfigError(f"estimate_weight must be in (0, 1], got {self.estimate_weight}")
        if not 0 <= self.timeout_reserve < 1:
            raise ConfigError(f"timeout_reserve must be in [0, 1), got {self.timeout_reserve}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


# ---------------------------------------------------------------------- responses


class Timings(BaseModel):
    """Seconds spent per stage. decode_s reads the upload (and finds the pieces of a long
    recording); encode_s / generate_s are those of the whole batches the request was answered in
    (summed over the batches of a long recording); total_s runs from the request's arrival to its
    answer (queueing included)."""

    decode_s: float
    encode_s: float
    generate_s: float
    total_s: float


class UnderstandResponse(BaseModel):
    """The answer for a clip of at most `max_seconds` (decoded whole)."""

    transcript: str | None = None
    entities: list[list[str]] | None = None
    sentiment: str | None = None
    raw: dict[str, str]
    parse_failures: list[str]
    timings: Timings


class Piece(TypedDict):
    """One piece of a long recording: its times in the recording (seconds) and its answers,
    with the keys of the tasks asked only (as `speechllm infer` writes them)."""

    start: float
    end: float
    transcript: NotRequired[str]
    entities: NotRequired[list[list[str]]]
    """[tag, phrase] found in this piece."""
    sentiment: NotRequired[str | None]
    parse_failures: list[str]
    raw: dict[str, str]


class LongUnderstandResponse(BaseModel):
    """The answer for a recording longer than `max_seconds`, split at its pauses (the JSON of
    `speechllm infer` for a long file, with timings): its pieces' answers joined."""

    transcript: str | None = None
    """The pieces' transcripts in order, joined with spaces."""
    entities: list[tuple[str, str, float, float]] | None = None
    """[tag, phrase, start, end]: each entity with the times (seconds) of the piece it is in."""
    sentiment: str | None = None
    """The overall sentiment: the majority by duration over the pieces (a tie is Neutral)."""
    parse_failures: list[str]
    pieces: list[Piece]
    """Every piece in order; [] when no speech was found."""
    timings: Timings


class Health(BaseModel):
    status: str
    model: str
    queue: int
    """Requests waiting for the model, wholly or in part (not counting those wholly in it)."""
    queued_rows: int
    """Rows (one clip or piece, one task) waiting for the model: what `max_queue` counts."""
    in_model: int
    """Requests with rows in the batch the model is computing now."""
    admitted: int
    """Requests admitted whose uploads are still being read or decoded: not queued yet, but
    counted by admission control as one row each (a long recording: until its pieces are
    known)."""
    service_seconds_per_row: float
    """Estimated model seconds per row (one clip or piece of a recording, one task)."""
    service_seconds_per_request: float
    """Estimated model seconds per request (per row x the average rows per request in a batch)."""
    measured_batches: int
    """Batches the estimate was measured on (0: it is still the prior)."""
    estimated_wait_s: float
    """Estimated seconds from now until a new one-row request would be answered."""
    refused: int
    """Requests refused with 429 since the server started (queue full or too slow to serve)."""
    max_upload_mb: float
    """The largest upload accepted, in MiB."""
    max_minutes: float
    """The longest recording accepted, in minutes."""
