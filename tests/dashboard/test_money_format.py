from decimal import Decimal


def test_the_dashboard_money_macro_uses_the_one_money_rule(app):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        macros = app.jinja_env.get_template("dashboard/_macros.html").module
        assert str(macros.money(Decimal("0.0000042"))).strip() == "$0.0000042"
        assert str(macros.money(Decimal("0"))).strip() == "$0.00"
        assert str(macros.money(Decimal("12.34567"))).strip() == "$12.35"
        assert str(macros.money(Decimal("25.0000"))).strip() == "$25.00"
        assert str(macros.money(Decimal("1234.5"))).strip() == "$1,234.50"
