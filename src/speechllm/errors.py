"""Exceptions users see. Each says what was wrong and, where there is one, the fix."""


class SpeechLLMError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class AudioError(SpeechLLMError):
    """An audio file that cannot be read or is unusable (names the file and the reason)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioTooLongError(AudioError):
    """A clip longer than the caller accepts (found before resampling, so it costs little)."""


class ManifestError(SpeechLLMError):
    """A manifest line that does not follow the format (names file, line and field)."""


class ModelSourceError(SpeechLLMError):
    """A model name that cannot be resolved, a missing package, or a corrupted cache."""


class ConfigError(SpeechLLMError):
    """A configuration file or value that is not valid."""


class CheckpointError(SpeechLLMError):
    """A training checkpoint that cannot be resumed from (names the folder and the way out)."""
