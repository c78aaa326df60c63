"""Locating and preparing the embedded default models."""
