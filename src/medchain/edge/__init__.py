"""What runs at a custodian (hospital, pharmacy, lab): the record vault and friends."""
