"""What a person should know about a job beyond its accuracy: a data audit before training
(leakage, label conflicts, rare classes, unusable or small images), calibration, where the model
looks (class activation maps), and one self-contained ``report.html`` that shows it all.

Every entry point here is best-effort: a failure is logged as a warning and the job goes on.
"""
