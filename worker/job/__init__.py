"""One job's work: the pipeline (spec -> inputs -> render -> upload -> result), inputs, the URL guard."""
