"""What the package asks of the machine: files read within limits and written atomically
(``files``), Ctrl-C between training steps (``interrupts``), and the memory a network needs
against what the machine has (``memory``).
"""
