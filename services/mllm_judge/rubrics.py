"""The judge's prompts, versioned. `edit` is the training reward (docs/method.md section 3, verbatim);
`fidelity`, `preservation` and `coherence` are MotionEdit-Bench's generative metrics (docs/method.md
section 6), written by this project because the paper's text is unpublished; `compare` asks which of
two edits is better, for the bench's Win Rate. The `curation/*` rubrics judge a video window from its
first and last frame for the video miner (`POST /v1/judge/curate`): four yes/no criteria, the motion
category and a one-sentence summary; they are kept apart in CURATION_RUBRICS so the score route does
not accept them. docs/rubrics.md explains each.

A version is `<name>/<revision>-<first 8 hex of sha256(text)>`: editing a prompt changes its
version even if nobody bumps the revision, so cached answers and results never mix two texts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from motionnft.contracts.judge import CURATION_CRITERIA, MOTION_CATEGORIES
from motionnft.judge_scores import CATEGORY_CHOICES, COMPARE_CHOICES, RATING_CHOICES, YESNO_CHOICES
from services.mllm_judge.backends.base import QuestionKind

_CHOICES: dict[QuestionKind, tuple[str, ...]] = {
    "rating": RATING_CHOICES,
    "compare": COMPARE_CHOICES,
    "yesno": YESNO_CHOICES,
    "category": CATEGORY_CHOICES,
    "describe": (),  # free text
}


@dataclass(frozen=True)
class Rubric:
    """A prompt template with `{prompt}` where the instruction goes (curation prompts have none)."""

    name: str
    revision: int
    kind: QuestionKind
    template: str

    @property
    def version(self) -> str:
        digest = hashlib.sha256(self.template.encode()).hexdigest()[:8]
        return f"{self.name}/{self.revision}-{digest}"

    @property
    def choices(self) -> tuple[str, ...]:
        return _CHOICES[self.kind]

    def render(self, instruction: str) -> str:
        # str.replace, not str.format: an instruction may contain braces.
        return self.template.replace("{prompt}", instruction)


# docs/method.md section 3, verbatim (its first sentence is wrapped there for width; it is one line).
EDIT = Rubric(
    "edit",
    1,
    "rating",
    """Here are two images: the original and the edited version. \
Please evaluate the edited image based on the following editing instruction.
Instruction: {prompt}
You need to rate the editing result from 0 to 5 based on the accuracy and quality of the edit.
0: The wrong object was edited, or the edit completely fails to follow the instruction.
5: The correct object was edited, the instructions were followed, and the visual result is high quality.
Response Format (Directly response the score number):
0-5""",
)

FIDELITY = Rubric(
    "fidelity",
    1,
    "rating",
    """Here are two images: the original and the edited version. \
The edit was meant to change a motion, pose, orientation or interaction.
Instruction: {prompt}
Rate how completely the instructed motion happened in the edited image, from 0 to 5. Judge only the \
motion: which body part or object moved, in which direction, and how far.
0: The instructed motion did not happen, or a different motion happened.
3: The motion happened partly: right part and direction, but too little, too much, or only roughly.
5: The instructed motion happened fully and exactly as asked.
Response Format (Directly response the score number):
0-5""",
)

PRESERVATION = Rubric(
    "preservation",
    1,
    "rating",
    """Here are two images: the original and the edited version. \
The edit was meant to change only a motion, pose, orientation or interaction.
Instruction: {prompt}
Rate how well everything the instruction did not ask to change was kept, from 0 to 5: the identity and \
appearance of every subject (face, clothing, colours, textures), the background, the lighting and the viewpoint.
0: The subject's identity or the scene was replaced or badly altered.
3: Mostly kept, with visible changes to appearance, background or viewpoint.
5: Everything not mentioned by the instruction is exactly as in the original.
Response Format (Directly response the score number):
0-5""",
)

COHERENCE = Rubric(
    "coherence",
    1,
    "rating",
    """Here are two images: the original and the edited version.
Instruction: {prompt}
Rate the physical plausibility and visual quality of the edited image alone, from 0 to 5: anatomy and \
pose are possible, objects keep their shape, contacts and shadows make sense, and there are no \
artifacts (blur, seams, duplicated or missing limbs, distorted text).
0: Physically impossible or heavily corrupted.
3: Plausible overall with noticeable artifacts or awkward parts.
5: Entirely plausible and artifact-free.
Response Format (Directly response the score number):
0-5""",
)

COMPARE = Rubric(
    "compare",
    1,
    "compare",
    """Here are three images: the original, then edit A, then edit B.
Instruction: {prompt}
Which edit follows the instruction better? Consider whether the instructed motion happened, whether \
the subject and scene were otherwise preserved, and the visual quality.
Response Format (Directly respond with the letter of the better edit):
A or B""",
)

RUBRICS: dict[str, Rubric] = {r.name: r for r in (EDIT, FIDELITY, PRESERVATION, COHERENCE)}

# Curation of video windows. Every prompt names the two images, asks one question, says how to answer.
_CLIP = "Here are two images: the first and the last frame of one short video clip."

STABLE = Rubric(
    "curation/stable",
    1,
    "yesno",
    f"""{_CLIP}
Is the setting stable between the two frames: the same background, the same viewpoint (no camera cut, \
pan or zoom) and the same lighting?
Answer Yes or No.""",
)

MOTION = Rubric(
    "curation/motion",
    1,
    "yesno",
    f"""{_CLIP}
Did a meaningful motion change happen between the two frames: a subject moved, changed its pose or \
orientation, or interacted with an object or another subject (more than a slight shift or camera shake)?
Answer Yes or No.""",
)

INTACT = Rubric(
    "curation/intact",
    1,
    "yesno",
    f"""{_CLIP}
Do the subjects stay intact between the two frames: every subject of the first frame is still whole \
in the last one, not occluded, distorted or gone?
Answer Yes or No.""",
)

QUALITY = Rubric(
    "curation/quality",
    1,
    "yesno",
    f"""{_CLIP}
Are both frames of high visual quality: sharp, well exposed, and free of heavy motion blur, compression \
artifacts, watermarks and overlaid text?
Answer Yes or No.""",
)

# One line per MOTION_CATEGORIES entry, in its order: the prompt's number k is CATEGORY_CHOICES[k - 1].
_CATEGORY_MEANINGS = {
    "pose": "a subject changes its body pose or gesture (raises an arm, bends, sits down)",
    "locomotion": "a subject moves from one place to another (walks, runs, jumps, drives away)",
    "object_state": "an object changes its state or shape (a door opens, a glass fills, paper folds)",
    "orientation": "a subject or object turns to face another direction",
    "subject_object": "a subject acts on an object (picks it up, pushes it, throws it)",
    "inter_subject": "two or more subjects interact with each other (hug, shake hands, pass something)",
}
assert tuple(_CATEGORY_MEANINGS) == MOTION_CATEGORIES, "one meaning per category, in contract order"
_CATEGORY_LINES = "\n".join(
    f"{number}: {name}: {_CATEGORY_MEANINGS[name]}."
    for number, name in zip(CATEGORY_CHOICES, MOTION_CATEGORIES, strict=True)
)

CATEGORY = Rubric(
    "curation/category",
    1,
    "category",
    f"""{_CLIP}
Which kind of motion change happened between the two frames?
{_CATEGORY_LINES}
Answer with the number of the kind that fits best, 1 to {len(MOTION_CATEGORIES)}.""",
)

SUMMARY = Rubric(
    "curation/summary",
    1,
    "describe",
    f"""{_CLIP}
What motion happened between the two frames?
Answer with one short sentence that names the subject that moves and how it moves, for example: \
"The woman turns her head toward the dog.\"""",
)

CRITERIA: dict[str, Rubric] = {c: r for c, r in zip(CURATION_CRITERIA, (STABLE, MOTION, INTACT, QUALITY), strict=True)}
"""Curation criterion (CURATION_CRITERIA) -> its yes/no rubric."""
CURATION_RUBRICS: dict[str, Rubric] = {r.name: r for r in (*CRITERIA.values(), CATEGORY, SUMMARY)}
