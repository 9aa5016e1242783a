from decimal import Decimal


def test_money_shows_tiny_costs_as_less_than_a_hundredth_cent(app):
    with app.app_context():
        macros = app.jinja_env.get_template("dashboard/_macros.html").module
        assert "&lt;$0.0001" in str(macros.money(Decimal("0.0000042")))
        assert 'title="$0.0000042"' in str(macros.money(Decimal("0.0000042")))
        assert str(macros.money(Decimal("0"))).strip() == "$0.0000"
        assert str(macros.money(Decimal("12.34567"))).strip() == "$12.3457"
        assert str(macros.money(Decimal("1234.5"))).strip() == "$1,234.50"
