"""The convergence test.

Seeded random histories of org changes, mapping edits, faults and interrupted runs against the emulators;
after every successful run Amplitude must equal the org.
"""
