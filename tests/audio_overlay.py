"""A licensed-wording overlay with a small generated WAV per text, for the recorded-audio tests."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "qol_app" / "questionnaires" / "wording-overlay.example.yaml"
OPTION_SETS = {"eortc4": 4, "rating7": 7}


def wav_bytes(tone: float, seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A short mono 16-bit PCM sine tone (distinct tones give distinct files)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = int(seconds * rate)
        wav.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * tone * n / rate))) for n in range(frames))
        )
    return out.getvalue()


def write_overlay(folder: Path, *, version: str = "example-zh_Hans-audio", audio_yaml: str | None = None) -> Path:
    """The example C30 overlay plus an ``audio`` section naming a WAV per item, the instructions and
    every option, written under ``folder/audio/``; ``audio_yaml`` replaces the section."""
    clips = folder / "audio"
    clips.mkdir(parents=True, exist_ok=True)
    lines = ["audio:", "  instructions: audio/instructions.wav", "  items:"]
    (clips / "instructions.wav").write_bytes(wav_bytes(200))
    for n in range(1, 31):
        (clips / f"q{n}.wav").write_bytes(wav_bytes(300 + 10 * n))
        lines.append(f"    q{n}: audio/q{n}.wav")
    lines.append("  options:")
    for key, count in OPTION_SETS.items():
        lines.append(f"    {key}:")
        for code in range(1, count + 1):
            name = f"{key}-{code}.wav"
            (clips / name).write_bytes(wav_bytes(700 + 10 * code + (100 if key == "rating7" else 0)))
            lines.append(f"      {code}: audio/{name}")
    text = EXAMPLE.read_text(encoding="utf-8").replace("example-zh_Hans-0", version)
    path = folder / "c30.zh_Hans.yaml"
    path.write_text(text + "\n" + (audio_yaml if audio_yaml is not None else "\n".join(lines)) + "\n", encoding="utf-8")
    return path
