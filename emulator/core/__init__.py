"""The framework-free core: clock, records, scheduler, outputs, faults, journal, spec. No HTTP here."""
