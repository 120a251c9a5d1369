"""Mining MotionEdit pairs from videos (`motionnft data mine`): decode window boundaries, prefilter on
flow and image statistics, ask the judge's curation rubrics, write the instruction, write a dataset.

Stages, each a named function:
- ``video``: which windows a video has, and the frames at their boundaries (OpenCV, seeking).
- ``prefilter``: pure statistics of frames and flow, and the decision they make (``reason`` codes).
- ``examine``: one window end to end before the judge (decode, flow, measures, prefilter).
- ``curation``: the judge's four criteria, category and motion summary, and the decision.
- ``instructions``: the summary rewritten by an OpenAI-compatible writer, or a motion template.
- ``manifest`` and ``dataset``: what was decided, and the pairs that were kept.
- ``local_run`` (process pool) and ``ray_run`` (Ray Data): the same stages at two scales.
"""
