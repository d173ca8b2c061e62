"""What the patient sees at once when an answer is a safety signal (clinical-spec §5.3)."""
