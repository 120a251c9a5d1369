"""MotionEdit-Bench: run, score, aggregate and report (METHOD.md section 6)."""
