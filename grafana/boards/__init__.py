"""One module per board; each names its UID, TITLE, DESCRIPTION, the check KINDS its `kind`
variable offers (a regex), and `build(board)`, which adds the panels. The order here is the
order of the links between boards."""

from grafana.boards import agent, dns, modules, overview, proxies_git, tls

BOARDS = (overview, dns, tls, modules, proxies_git, agent)
