-- What the person who submitted a job should know about how its current attempt runs, e.g. that
-- its image was not applied because a process worker ran it on its host.

ALTER TABLE jobs ADD COLUMN notice text NOT NULL DEFAULT '';
