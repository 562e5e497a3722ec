"""A Trac plugin that edits a wiki page between STAT bot's read of the editor and its post.

Loaded into the test tracd on demand (tests/integration/test_trac_wiki.py), it makes
a real concurrent edit, in Trac's own model and database, just before Trac handles a
wiki edit form posted for a page whose last part is:
- `RacedOnce`: only when the post creates the page (version 0), so a retry succeeds;
- `AlwaysRaced`: on every post, so the retry loses too.
"""

from trac.core import Component, implements
from trac.web.api import IRequestFilter
from trac.wiki.model import WikiPage


class WikiRacer(Component):
    implements(IRequestFilter)

    def pre_process_request(self, req, handler):
        if req.method == "POST" and req.path_info.startswith("/wiki/"):
            name = req.path_info[len("/wiki/") :]
            last = name.rsplit("/", 1)[-1]
            if req.args.get("action") == "edit" and (
                last == "AlwaysRaced" or (last == "RacedOnce" and req.args.get("version") == "0")
            ):
                page = WikiPage(self.env, name)
                page.text = f"{page.text}\nracer's edit {page.version + 1}"
                page.save("racer", "a concurrent edit")
        return handler

    def post_process_request(self, req, template, data, metadata):
        return template, data, metadata
