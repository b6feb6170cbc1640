"""The pieces of ``ivrstream demo`` that need no network: the timeline of injected faults
(:mod:`.timeline`), what the dashboard reads (:mod:`.probe`), how it looks (:mod:`.dashboard`)
and the verdict at the end (:mod:`.summary`). :mod:`ivrstream.commands.demo` runs them."""
