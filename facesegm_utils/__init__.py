"""facesegm_utils: the tested code behind the facesegm face-parsing course.

Modules, in the order data flows through them::

    labels -> synthetic / celebamask -> prepare -> pipeline -> model / losses -> training
    -> metrics / evaluation / viz -> inference -> recolor / clips / video -> widgets / course / cli

Importing the package changes nothing: no seeding, no GPU setup and no TensorFlow import.
"""

__version__ = "0.1.0"
