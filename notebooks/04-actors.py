# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Actors
#
# A task is a function: it starts, returns and forgets. An **actor** is an instance of
# a class that lives in its own worker process and keeps its state between calls.
# `@kit.remote` on a class makes it an actor class; `Cls.remote()` creates one and
# returns a **handle**; `handle.method.remote()` calls a method and returns a ref.

# %%
import time

import kit

kit.init(num_cpus=2)


# %% [markdown]
# ## A counter

# %%
@kit.remote
class Counter:
    def __init__(self):
        self.value = 0

    def inc(self):
        self.value += 1
        return self.value

    def get_value(self):
        return self.value

c = Counter.remote()
print(kit.get([c.inc.remote() for _ in range(5)]))

# %% [markdown]
# The calls of one caller run one at a time, in the order they were made: the five
# `inc` calls above return 1 to 5. There is no lock to take; the actor is the only one
# touching its state.
#
# Each actor has its own state. Four counters, each incremented three times without
# waiting, then read:

# %%
counters = [Counter.remote() for _ in range(4)]
for counter in counters:
    for _ in range(3):
        counter.inc.remote()                    # no get: we do not wait
print(kit.get([counter.get_value.remote() for counter in counters]))


# %% [markdown]
# ## Passing a handle to tasks
#
# A handle can be passed to tasks (and other actors) like any argument. Here three
# `worker` tasks post messages to one `MessageActor`, while the driver collects what
# has arrived so far.

# %%
@kit.remote
class MessageActor:
    def __init__(self):
        self.messages = []

    def add_message(self, message):
        self.messages.append(message)

    def get_and_clear_messages(self):
        messages = self.messages
        self.messages = []
        return messages


@kit.remote
def worker(message_actor, j):
    for i in range(100):
        time.sleep(0.001)
        message_actor.add_message.remote(f"Message {i} from worker {j}.")


# %%
message_actor = MessageActor.remote()
workers = [worker.remote(message_actor, j) for j in range(3)]

got = []
deadline = time.time() + 30
while len(got) < 300 and time.time() < deadline:
    new_messages = kit.get(message_actor.get_and_clear_messages.remote())
    if new_messages:
        print(f"{len(new_messages):3d} new, e.g. {new_messages[-1]!r}")
    got += new_messages
    time.sleep(0.05)
print("messages received:", len(got))


# %% [markdown]
# Each worker's messages arrive in the order it sent them; messages of different
# workers interleave.
#
# ## Exercise
#
# Write a `Stats` actor with `add(x)` and `mean()`. Start ten tasks `square_into(stats, i)`
# for `i` in `range(10)`, each adding `i * i` to the actor through the handle. When
# the tasks are done, print the mean (it should be 28.5).
#
# Hint: a task that calls `stats.add.remote(...)` and returns at once may finish
# before the actor has run the call; `kit.get` the call inside the task to be sure.

# %% [markdown]
# ### Solution

# %%
@kit.remote
class Stats:
    def __init__(self):
        self.values = []

    def add(self, x):
        self.values.append(x)

    def mean(self):
        return sum(self.values) / len(self.values)


@kit.remote
def square_into(stats, i):
    kit.get(stats.add.remote(i * i))


stats = Stats.remote()
kit.get([square_into.remote(stats, i) for i in range(10)])
print("mean:", kit.get(stats.mean.remote()))

# %%
kit.shutdown()
