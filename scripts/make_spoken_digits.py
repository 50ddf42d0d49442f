"""Speak short digit sequences in several languages with espeak-ng: a tiny multilingual ASR set, no Hub.

    python scripts/make_spoken_digits.py --out outputs/spoken_digits_fr_de --languages fr,de \
        --split train=800 --split test=100

Writes an audiofolder that ``finetune`` reads as it is: ``<out>/<split>/metadata.csv`` (file_name, text,
language, voice, speed, duration) beside 16 kHz mono 16-bit wav files. Why: a multilingual Whisper
trained from scratch on it has to learn to transcribe each language under its own language token.

Each utterance is 1 to ``--max-digits`` digits written as words in its language ("deux sept",
"fünf null eins", "nine"), NFC text, spoken by one of that language's espeak-ng voices (accent + voice
variant, see ``VOICES``) at one of ``--speeds`` words per minute. ``--split NAME=COUNT`` counts
utterances PER LANGUAGE, so every split is balanced: ``train=800`` with fr,de gives 1600 rows,
interleaved fr, de, fr, de, ... (any head of the file is balanced too). ``language`` holds the ISO code.

Everything is drawn with ``--seed``, from one stream per (split, language): the same command writes the
same metadata, adding a split or a language never changes another one, and the test split is drawn
independently of train (with 1110 possible sequences of up to 3 digits, some texts recur across splits;
voices and speeds are shared, as they are the same synthesizer).

espeak-ng comes from the distribution's packages (Debian/Ubuntu: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import random
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # espeak_synth sits beside this file, which is not a package
    sys.path.insert(0, HERE)

from espeak_synth import SpeechJob, SynthesisError, write_split_jobs

# 0..9 as words, in the spelling a transcript should have (NFC: "zéro", "fünf" are single code points).
NUMBER_WORDS: dict[str, tuple[str, ...]] = {
    "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}
# espeak-ng 1.51 formant voices (Debian package) that speak digits differently from one another. fr-be and
# fr-ch sound exactly like fr on digits (en-gb+f2 like en-gb), and the mbrola voices need the mbrola package,
# so none of those is here.
VOICES: dict[str, tuple[str, ...]] = {
    "fr": ("fr", "fr+f2", "fr+f3", "fr+m3", "fr+m5", "fr+m7"),
    "de": ("de", "de+f2", "de+f4", "de+m2", "de+m3", "de+m6"),
    "en": ("en-us", "en-us+f3", "en-gb", "en-gb-scotland+m3", "en-029+f4", "en-us-nyc+m2"),
}
DEFAULT_LANGUAGES = ("fr", "de")
DEFAULT_SPEEDS = (140, 165, 190)  # words per minute; espeak-ng's default is 175
SPEED_RANGE = (80, 450)  # what espeak-ng accepts for -s
METADATA_COLUMNS = ("file_name", "text", "language", "voice", "speed", "duration")


@dataclass(frozen=True)
class Utterance:
    index: int  # position among its language's utterances in the split
    language: str
    text: str
    voice: str
    speed: int


def digit_text(digits: list[int], language: str) -> str:
    """The digits as space-separated words of ``language``, NFC-normalized."""
    return unicodedata.normalize("NFC", " ".join(NUMBER_WORDS[language][d] for d in digits))


def plan_language(language: str, count: int, max_digits: int, speeds: list[int], seed: str) -> list[Utterance]:
    """``count`` seeded utterances of one language: a length in 1..max_digits, digits, a voice, a speed."""
    rng = random.Random(seed)
    utterances = []
    for index in range(count):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, max_digits))]
        utterances.append(Utterance(index=index, language=language, text=digit_text(digits, language),
                                    voice=rng.choice(VOICES[language]), speed=rng.choice(speeds)))
    return utterances


def plan(split: str, count: int, languages: list[str], max_digits: int, speeds: list[int],
         seed: int) -> list[Utterance]:
    """``count`` utterances per language, interleaved language by language so that every prefix is balanced."""
    # one stream per (split, language): adding a split or a language never changes another one
    per_language = [plan_language(language, count, max_digits, speeds, f"{seed}:{split}:{language}")
                    for language in languages]
    return [utterance for group in zip(*per_language) for utterance in group]


def speech_jobs(split: str, utterances: list[Utterance]) -> list[SpeechJob]:
    """What espeak_synth writes for a split: ``<split>_<language>_<index>.wav`` with a language column."""
    return [SpeechJob(file_name=f"{split}_{u.language}_{u.index:05d}.wav", text=u.text, voice=u.voice,
                      speed=u.speed, label=f"{split} {u.language} #{u.index}", columns={"language": u.language})
            for u in utterances]


def parse_split(value: str) -> tuple[str, int]:
    name, sep, count = value.partition("=")
    if not name or not sep or not count.isdigit() or int(count) == 0:
        raise argparse.ArgumentTypeError(f"--split expects NAME=COUNT (COUNT > 0 utterances per language), "
                                         f"got {value!r}")
    return name, int(count)


def parse_languages(value: str) -> list[str]:
    languages = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [language for language in languages if language not in NUMBER_WORDS]
    if not languages or unknown:
        raise argparse.ArgumentTypeError(f"--languages expects a comma-separated list of {', '.join(NUMBER_WORDS)}"
                                         f", got {value!r}")
    if len(set(languages)) != len(languages):
        raise argparse.ArgumentTypeError(f"--languages lists a language twice: {value!r}")
    return languages


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors argparse's types cannot see: they name the option and exit like argparse does."""
    names = [name for name, _ in args.split]
    if len(set(names)) != len(names):
        parser.error(f"--split: each split once, got {', '.join(names)}")
    if args.max_digits < 1:
        parser.error(f"--max-digits must be at least 1, got {args.max_digits}")
    low, high = SPEED_RANGE
    bad = [speed for speed in args.speeds if not low <= speed <= high]
    if bad:
        parser.error(f"--speeds must be {low}..{high} words per minute (espeak-ng's range), got {bad}")
    if args.sampling_rate <= 0:
        parser.error(f"--sampling-rate must be positive, got {args.sampling_rate}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="audiofolder to write")
    parser.add_argument("--split", type=parse_split, action="append", required=True,
                        help="NAME=COUNT, COUNT utterances per language; repeat for several splits")
    parser.add_argument("--languages", type=parse_languages, default=list(DEFAULT_LANGUAGES),
                        help=f"comma-separated, of {', '.join(NUMBER_WORDS)} (default {','.join(DEFAULT_LANGUAGES)})")
    parser.add_argument("--max-digits", type=int, default=3, help="digits per utterance: 1 to this")
    parser.add_argument("--speeds", nargs="+", type=int, default=list(DEFAULT_SPEEDS), help="words per minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling-rate", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        for split, count in args.split:
            utterances = plan(split, count, args.languages, args.max_digits, args.speeds, args.seed)
            metadata = write_split_jobs(args.out / split, speech_jobs(split, utterances), METADATA_COLUMNS,
                                        sampling_rate=args.sampling_rate, workers=args.workers)
            print(f"{split}: {len(utterances)} utterances ({count} per language: {','.join(args.languages)}) "
                  f"-> {metadata}")
    except SynthesisError as error:
        print(f"make_spoken_digits: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
