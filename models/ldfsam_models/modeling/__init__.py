"""LDFSAM network modules, one small file per part."""
