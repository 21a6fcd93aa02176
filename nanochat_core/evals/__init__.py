"""Evaluations of base and chat models (CORE, bpb, chat tasks) and the data they need."""
