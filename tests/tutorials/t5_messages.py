"""Tutorial 5: a message actor whose handle is passed to worker tasks."""

import time

import kit as ray


@ray.remote
class MessageActor(object):
    def __init__(self):
        self.messages = []

    def add_message(self, message):
        self.messages.append(message)

    def get_and_clear_messages(self):
        messages = self.messages
        self.messages = []
        return messages


@ray.remote
def worker(message_actor, j):
    for i in range(100):
        time.sleep(0.001)
        message_actor.add_message.remote(f"Message {i} from worker {j}.")


if __name__ == "__main__":
    ray.init()
    message_actor = MessageActor.remote()
    [worker.remote(message_actor, j) for j in range(3)]
    got = []
    deadline = time.time() + 30
    while len(got) < 300 and time.time() < deadline:
        new_messages = ray.get(message_actor.get_and_clear_messages.remote())
        if new_messages:
            print("New messages:", len(new_messages))
        got += new_messages
        time.sleep(0.05)
    assert sorted(got) == sorted(
        f"Message {i} from worker {j}." for i in range(100) for j in range(3)
    )
    print("messages ok", len(got))
