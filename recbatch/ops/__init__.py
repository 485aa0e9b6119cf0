"""Operations around the stages: run identity and dates (`run_id`), the work-directory lock (`lock`)."""
