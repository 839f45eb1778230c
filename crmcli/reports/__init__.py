"""Reports: each module computes plain rows in SQL; :mod:`crmcli.render` draws them."""
