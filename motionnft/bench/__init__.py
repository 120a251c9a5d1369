"""MotionEdit-Bench: run, score, aggregate and report (docs/method.md section 6)."""
