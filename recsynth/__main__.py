from recsynth.entry import run

run()
