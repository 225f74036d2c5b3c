"""Encodings of florgit data: logged values, Arrow record files."""
