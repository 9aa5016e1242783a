from webapp.litellm.simulator.cli import simulate_command

if __name__ == "__main__":
    simulate_command(prog_name="python -m webapp.litellm.simulator")
