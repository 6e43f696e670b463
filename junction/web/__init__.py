"""Pages for people: the dev inbox now; the dashboard and hosted pages later."""
