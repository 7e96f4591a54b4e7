"""daemon/numbers.py gives phonenumbers' own answer on validity, for every region."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from daemon.numbers import is_valid

SAMPLES_PER_CODE = 300


def _numbers_near_examples(cc: int, rng: random.Random) -> list[phonenumbers.PhoneNumber]:
    """Valid examples of every type, the same with digits changed, and random digit strings."""
    out = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]:
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                out.append(example)
                digits = list(str(example.national_number))
                for _ in range(5):
                    i = rng.randrange(len(digits))
                    digits[i] = rng.choice("0123456789")
                    mutated = "".join(digits).lstrip("0") or "1"
                    out.append(phonenumbers.PhoneNumber(country_code=cc,
                                                        national_number=int(mutated)))
    for _ in range(SAMPLES_PER_CODE):
        length = rng.randint(4, 15)
        national = rng.choice("123456789") + "".join(rng.choices("0123456789", k=length - 1))
        out.append(phonenumbers.PhoneNumber(country_code=cc, national_number=int(national)))
    return out


@pytest.mark.parametrize("cc", sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
def test_same_verdict_as_phonenumbers(cc: int) -> None:
    rng = random.Random(cc)
    numbers = _numbers_near_examples(cc, rng)
    wrong = [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
             for n in numbers if is_valid(n) != phonenumbers.is_valid_number(n)]
    assert wrong == []


def test_the_verdicts_are_not_all_the_same() -> None:
    """Guards the comparison above from passing on a sample with no valid numbers."""
    rng = random.Random(86)
    verdicts = {is_valid(n) for n in _numbers_near_examples(86, rng)}
    assert verdicts == {True, False}
